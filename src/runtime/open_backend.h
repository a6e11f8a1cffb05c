// What Engine and Executor share to start: the backend a device string names and the
// weight-loading progress line.
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/model.h"

namespace kiln {

// "auto" -> "cuda" when a GPU is usable, else "cpu"; other names are returned as given.
std::string ResolveDevice(const std::string& device);
// The backend of a resolved device ("cpu", "cuda", "cuda:N"); CUDA computes in the engine's
// dtype, or in f32 with f32_activations. An unknown name is an error naming it.
Expected<std::unique_ptr<Backend>> OpenBackend(const std::string& device, DType engine_dtype, bool f32_activations);
// A "loading weights i/n" counter on stderr, or no callback when !show.
Model::Progress StderrLoadProgress(bool show);

}  // namespace kiln
