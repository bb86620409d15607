// The real cmf binary interrupted mid-quantize (SIGINT, SIGTERM: nothing left, one line, exit
// 128+signal), killed (SIGKILL: the next run in the directory sweeps what it left) and run on a
// disk too small for its outputs (refused before anything is written).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "test_support.h"

namespace cmf::test {
namespace {

std::set<std::string> listing(const fs::path& dir) {
    std::set<std::string> s;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) s.insert(e.path().filename().string());
    return s;
}

bool has_temp(const fs::path& dir) {
    for (const auto& n : listing(dir))
        if (n.starts_with(".cmf-tmp-")) return true;
    return false;
}

std::string join(const std::set<std::string>& s) {
    std::string o;
    for (const auto& n : s) o += (o.empty() ? "" : " ") + n;
    return o;
}

// One checkpoint per test process (removed at exit), big enough that quantizing it to four types
// on one thread takes seconds (48 layers of the tiny preset: hidden 512, ~206 MB).
const fs::path& checkpoint() {
    static TempDir dir;
    static const fs::path p = dir.path() / "ckpt";
    static bool made = false;
    if (!made) {
        RunResult r = run_cmf("synth " + shell_quote(p.string()) + " --layers 48");
        if (r.exit_code != 0) throw std::runtime_error("cmf synth failed: " + r.output);
        made = true;
    }
    return p;
}

const char* kTypes = "q4_k_m,q5_k_m,q6_k,q3_k_m";

// Starts `cmf quantize` with stderr to `err`; returns its pid.
pid_t start_quantize(const fs::path& out, const fs::path& err) {
    const std::string src = checkpoint().string(), o = out.string();
    pid_t pid = ::fork();
    if (pid == 0) {
        int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int n = ::open("/dev/null", O_WRONLY);
        ::dup2(e, 2);
        ::dup2(n, 1);
        ::execl(CMF_BINARY, "cmf", "quantize", src.c_str(), "--quant", kTypes, "--threads", "1", "--quiet", "--out", o.c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    return pid;
}

// Waits until the run has temporaries on disk (it is writing), then a little more.
bool wait_for_writing(pid_t pid, const fs::path& out) {
    for (int i = 0; i < 3000; ++i) {
        if (has_temp(out)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            return true;
        }
        int st;
        if (::waitpid(pid, &st, WNOHANG) == pid) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

int wait_exit(pid_t pid) {
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void interrupt_leaves_nothing(int sig, int expected_rc, const std::string& name) {
    TempDir d;
    const fs::path out = d / "out";
    fs::create_directories(out);
    const pid_t pid = start_quantize(out, d / "err");
    ASSERT_TRUE(wait_for_writing(pid, out)) << "the run ended before it was interrupted; stderr: " << read_file(d / "err");
    ASSERT_TRUE(has_temp(out));
    ::kill(pid, sig);
    EXPECT_EQ(wait_exit(pid), expected_rc);
    EXPECT_EQ(listing(out), std::set<std::string>{}) << join(listing(out));
    const std::string err = read_file(d / "err");
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_TRUE(err.starts_with("cmf: interrupted by " + name + " while quantizing ckpt-Q4_K_M.gguf and 3 more; removed ")) << err;
    EXPECT_TRUE(err.ends_with(" temporary files\n")) << err;
}

TEST(Interrupt, SigintMidQuantizeLeavesNoFileAndExits130) { interrupt_leaves_nothing(SIGINT, 130, "SIGINT"); }

TEST(Interrupt, SigtermMidQuantizeLeavesNoFileAndExits143) { interrupt_leaves_nothing(SIGTERM, 143, "SIGTERM"); }

TEST(Interrupt, TheNextRunSweepsWhatAKilledRunLeft) {
    TempDir d;
    const fs::path out = d / "out";
    fs::create_directories(out);
    const pid_t pid = start_quantize(out, d / "err");
    ASSERT_TRUE(wait_for_writing(pid, out)) << read_file(d / "err");
    ::kill(pid, SIGKILL);
    EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
    ASSERT_TRUE(has_temp(out)) << "SIGKILL cannot be caught: its temporaries stay until a sweep";

    RunResult r = run_cmf("quantize " + shell_quote(checkpoint().string()) + " --quant q8_0 --quiet --out " + shell_quote(out.string()));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("cmf: removed 4 stale temporary files ("), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(") left by dead runs in " + out.string() + "\n"), std::string::npos) << r.output;
    EXPECT_FALSE(has_temp(out)) << join(listing(out));
    EXPECT_EQ(listing(out), (std::set<std::string>{"ckpt-Q8_0.gguf", "ckpt-Q8_0.quality.json"}));
}

// A 4 MiB tmpfs at `dir`, unmounted when it goes away; `error` says why it could not be mounted.
struct SmallTmpfs {
    fs::path dir;
    std::string error;
    explicit SmallTmpfs(fs::path d) : dir(std::move(d)) {
        fs::create_directories(dir);
        if (::geteuid() != 0) error = "needs root to mount a small tmpfs";
        else if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=4m") != 0) error = std::string("cannot mount a tmpfs here: ") + std::strerror(errno);
    }
    ~SmallTmpfs() {
        if (error.empty()) ::umount2(dir.c_str(), MNT_DETACH);
    }
};

TEST(FullDisk, ARunWhoseOutputsDoNotFitFailsBeforeWriting) {
    TempDir d;
    SmallTmpfs small(d / "small");
    if (!small.error.empty()) GTEST_SKIP() << "SKIPPED: " << small.error;
    const fs::path mnt = small.dir;
    write_file(mnt / "already-here.gguf", std::string(100000, 'x'));
    const std::set<std::string> before = listing(mnt);

    RunResult r = run_cmf("quantize " + shell_quote(checkpoint().string()) + " --quant " + kTypes + " --quiet --out " + shell_quote(mnt.string()));
    EXPECT_EQ(r.exit_code, 4) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_TRUE(r.output.starts_with("cmf quantize: not enough free space in " + mnt.string() + " for quantizing ckpt-Q4_K_M.gguf and 3 more: needs "))
        << r.output;
    EXPECT_NE(r.output.find(" available\n"), std::string::npos) << r.output;
    EXPECT_EQ(listing(mnt), before) << join(listing(mnt));
    EXPECT_EQ(read_file(mnt / "already-here.gguf").size(), 100000u);

    // an output directory the run would create is not left behind either
    r = run_cmf("quantize " + shell_quote(checkpoint().string()) + " --quant q8_0 --quiet --out " + shell_quote((mnt / "new" / "sub").string()));
    EXPECT_EQ(r.exit_code, 4) << r.output;
    EXPECT_TRUE(r.output.starts_with("cmf quantize: not enough free space in " + (mnt / "new" / "sub").string())) << r.output;
    EXPECT_EQ(listing(mnt), before) << join(listing(mnt));
}

TEST(FullDisk, AnImportWhoseBlobsDoNotFitFailsBeforeWriting) {
    if (::geteuid() != 0) GTEST_SKIP() << "SKIPPED: needs root to mount a small tmpfs";
    TempDir d;
    ASSERT_EQ(run_cmf("synth " + shell_quote((d / "tiny").string())).exit_code, 0);
    RunResult q = run_cmf("quantize " + shell_quote((d / "tiny").string()) + " --quant f16 --quiet --out " + shell_quote((d / "gguf").string()));
    ASSERT_EQ(q.exit_code, 0) << q.output;  // ~10 MB
    SmallTmpfs small(d / "small");
    if (!small.error.empty()) GTEST_SKIP() << "SKIPPED: " << small.error;
    const fs::path mnt = small.dir;
    fs::create_directories(mnt / "store" / "blobs");
    RunResult r = run_cmf("import " + shell_quote((d / "gguf" / "tiny-F16.gguf").string()) + " tiny:f16 --license " + shell_quote((d / "tiny" / "LICENSE").string()) +
                          " --store " + shell_quote((mnt / "store").string()));
    EXPECT_EQ(r.exit_code, 4) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_TRUE(r.output.starts_with("cmf import: not enough free space in " + (mnt / "store" / "blobs").string() +
                                     " for importing registry.ollama.ai/library/tiny:f16: needs "))
        << r.output;
    EXPECT_EQ(listing(mnt / "store"), std::set<std::string>{"blobs"});
    EXPECT_EQ(listing(mnt / "store" / "blobs"), std::set<std::string>{});
}

}  // namespace
}  // namespace cmf::test
