// kiln tokenize / detokenize / chat-template end to end (the binary built beside the tests;
// the KILN_BINARY environment variable may point at another one).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "../golden/tokenizer_test_util.h"

namespace kiln {
namespace {

using namespace kiln::testing_tok;

std::string Binary() {
  const char* env = std::getenv("KILN_BINARY");
  return env ? env : KILN_BINARY;
}

// Runs a command, returns stdout; *rc gets the exit status.
std::string RunCmd(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

TEST(TokenizerCli, TokenizeDetokenizeChatTemplate) {
  const std::string bin = SharedPath("models/stories260K/tok512.bin");
  const std::string qwen = SharedPath("tokenizers/qwen2.5");
  if (!Exists(bin) || !Exists(qwen)) GTEST_SKIP() << "fixture missing: " << bin;
  ASSERT_TRUE(Exists(Binary())) << "kiln binary not built: " << Binary();
  int rc = -1;
  EXPECT_EQ(
      RunCmd(Binary() + " tokenize --tokenizer " + bin + " --text 'Once upon a time' --add-special", &rc),
      "[1, 403, 407, 261, 378]\n");
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(
      RunCmd(Binary() + " detokenize --tokenizer " + bin + " --tokens 1,403,407,261,378 --skip-special", &rc),
      "Once upon a time\n");
  EXPECT_EQ(rc, 0);
  RunCmd(Binary() + " detokenize --tokenizer " + bin + " --tokens 1,x", &rc);
  EXPECT_EQ(rc, 1);
  std::string err = RunCmd(Binary() + " tokenize --tokenizer /nonexistent --text hi", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("/nonexistent"), std::string::npos) << err;

  const std::string msgs = ::testing::TempDir() + "kiln_tok_msgs.json";
  std::ofstream(msgs) << R"([{"role": "user", "content": "Hi"}])";
  EXPECT_EQ(
      RunCmd(Binary() + " chat-template --tokenizer " + qwen + " --messages " + msgs, &rc),
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n\n");
  EXPECT_EQ(rc, 0);
  std::string ids =
      RunCmd(Binary() + " chat-template --tokenizer " + qwen + " --messages " + msgs + " --ids", &rc);
  EXPECT_EQ(ids.rfind("[151644, 8948, 198,", 0), 0u) << ids;
  std::remove(msgs.c_str());
}

}  // namespace
}  // namespace kiln
