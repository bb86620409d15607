// core/temp_file.h: TempFile commit and cleanup, commit_all all-or-nothing, the sweep of dead
// runs' temporaries (a SIGKILLed owner's file goes, a live owner's stays), the free-space check,
// and the interrupt watcher in a forked child.
#include "cmf/core/temp_file.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <regex>
#include <set>
#include <thread>

#include "test_support.h"

namespace cmf {
namespace {

using test::TempDir;

std::set<std::string> listing(const fs::path& dir) {
    std::set<std::string> s;
    for (const auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
    return s;
}

size_t count_temps(const fs::path& dir) {
    size_t n = 0;
    for (const auto& name : listing(dir)) n += name.starts_with(kTempPrefix);
    return n;
}

TEST(TempFile, NamedBesideItsFinalPathAndRenamedByCommit) {
    TempDir d;
    const fs::path final_path = d / "model-Q4_K_M.gguf";
    {
        TempFile t(final_path);
        EXPECT_EQ(t.path().parent_path(), d.path());
        const std::string name = t.path().filename().string();
        EXPECT_TRUE(name.starts_with(".cmf-tmp-" + std::to_string(::getpid()) + "-")) << name;
        EXPECT_TRUE(name.ends_with("-model-Q4_K_M.gguf")) << name;
        t.write(std::string("hello"));
        EXPECT_TRUE(fs::exists(t.path()));
        EXPECT_FALSE(fs::exists(final_path));
        t.commit();
        EXPECT_TRUE(t.committed());
    }
    EXPECT_EQ(test::read_file(final_path), "hello");
    EXPECT_EQ(listing(d.path()), std::set<std::string>{"model-Q4_K_M.gguf"});
}

TEST(TempFile, DestroyedUncommittedLeavesNothing) {
    TempDir d;
    test::write_file(d / "keep.txt", "old");
    {
        TempFile t(d / "keep.txt");
        t.write(std::string(1 << 16, 'x'));
        EXPECT_EQ(count_temps(d.path()), 1u);
    }
    EXPECT_EQ(listing(d.path()), std::set<std::string>{"keep.txt"});
    EXPECT_EQ(test::read_file(d / "keep.txt"), "old");  // the old file is untouched
}

TEST(TempFile, CommitAllRenamesEveryFileOrNone) {
    TempDir d;
    {
        std::vector<std::unique_ptr<TempFile>> ts;
        std::vector<TempFile*> ptrs;
        for (const char* n : {"a.gguf", "b.gguf", "c.json"}) {
            ts.push_back(std::make_unique<TempFile>(d / n));
            ts.back()->write(std::string(n));
            ptrs.push_back(ts.back().get());
        }
        commit_all(ptrs);
    }
    EXPECT_EQ(listing(d.path()), (std::set<std::string>{"a.gguf", "b.gguf", "c.json"}));
    EXPECT_EQ(test::read_file(d / "b.gguf"), "b.gguf");

    // the third rename fails (its final name is a non-empty directory): the first two, already
    // renamed, are taken back, and every temporary goes with its TempFile
    TempDir e;
    fs::create_directories(e / "z.gguf" / "occupied");
    {
        std::vector<std::unique_ptr<TempFile>> ts;
        std::vector<TempFile*> ptrs;
        for (const char* n : {"x.gguf", "y.gguf", "z.gguf"}) {
            ts.push_back(std::make_unique<TempFile>(e / n));
            ts.back()->write(std::string(n));
            ptrs.push_back(ts.back().get());
        }
        EXPECT_THROW(commit_all(ptrs), Error);
    }
    EXPECT_EQ(listing(e.path()), std::set<std::string>{"z.gguf"});
}

// A child that creates a TempFile in `dir`, reports ready through a pipe, then waits forever.
pid_t child_holding_temp(const fs::path& dir, const std::string& name) {
    int p[2];
    if (::pipe(p) != 0) return -1;
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(p[0]);
        TempFile t(dir / name);
        t.write(std::string(1000, 'x'));
        char c = 1;
        (void)!::write(p[1], &c, 1);
        for (;;) ::pause();
    }
    ::close(p[1]);
    char c = 0;
    (void)!::read(p[0], &c, 1);
    ::close(p[0]);
    return pid;
}

TEST(SweepStaleTemporaries, RemovesOnlyTheFilesOfDeadRuns) {
    TempDir d;
    const pid_t dead = child_holding_temp(d.path(), "dead.gguf");
    const pid_t live = child_holding_temp(d.path(), "live.gguf");
    ASSERT_GT(dead, 0);
    ASSERT_GT(live, 0);
    ::kill(dead, SIGKILL);
    int st = 0;
    ::waitpid(dead, &st, 0);  // reaped: its pid is no longer running
    ASSERT_EQ(count_temps(d.path()), 2u);

    // names of older cmf versions: `.NAME.tmp-PID`, removed only when PID is not running
    test::write_file(d / (".old.gguf.tmp-" + std::to_string(dead)), std::string(500, 'o'));
    test::write_file(d / (".busy.gguf.tmp-" + std::to_string(live)), "b");
    // resumable downloads and ordinary files are never touched
    test::write_file(d / "model.safetensors.cmf-partial", "p");
    test::write_file(d / "model.safetensors.cmf-partial.json", "{}");
    test::write_file(d / "model.gguf", "m");
    test::write_file(d / ".hidden", "h");

    const SweptTemporaries s = sweep_stale_temporaries(d.path());
    EXPECT_EQ(s.files.size(), 2u);
    EXPECT_EQ(s.bytes, 1500u);
    std::set<std::string> left = listing(d.path());
    size_t live_temps = 0;
    for (const auto& n : left) {
        EXPECT_EQ(n.find("dead.gguf"), std::string::npos) << n;
        live_temps += n.starts_with(kTempPrefix + std::to_string(live) + "-");
    }
    EXPECT_EQ(live_temps, 1u);
    EXPECT_EQ(left.count(".old.gguf.tmp-" + std::to_string(dead)), 0u);
    EXPECT_EQ(left.count(".busy.gguf.tmp-" + std::to_string(live)), 1u);
    for (const char* n : {"model.safetensors.cmf-partial", "model.safetensors.cmf-partial.json", "model.gguf", ".hidden"})
        EXPECT_EQ(left.count(n), 1u) << n;
    EXPECT_EQ(describe_sweep(s, d.path()), "removed 2 stale temporary files (1.5 kB) left by dead runs in " + d.path().string());

    ::kill(live, SIGKILL);
    ::waitpid(live, &st, 0);
    EXPECT_EQ(sweep_stale_temporaries(d.path()).files.size(), 2u);  // now the live one's too
    EXPECT_EQ(count_temps(d.path()), 0u);
}

TEST(RequireFreeSpace, FailsWithOneLineNamingNeededAndAvailableBytes) {
    TempDir d;
    EXPECT_NO_THROW(require_free_space(d.path(), 0, "nothing"));
    try {
        require_free_space(d.path(), 1ull << 62, "quantizing m-Q4_K_M.gguf");
        FAIL() << "no error";
    } catch (const Error& e) {
        const std::string m = e.what();
        EXPECT_EQ(e.exit_code(), 4);
        EXPECT_EQ(m.find('\n'), std::string::npos);
        EXPECT_NE(m.find("not enough free space in " + d.path().string() + " for quantizing m-Q4_K_M.gguf"), std::string::npos) << m;
        EXPECT_NE(m.find("needs 4611686018427387904 bytes (4611686.0 TB)"), std::string::npos) << m;
        EXPECT_TRUE(std::regex_search(m, std::regex(R"(bytes \(4611686\.0 TB\), [0-9]+ bytes \([0-9.]+ (bytes|[kMGT]B)\) available$)"))) << m;
    }
}

// Forks a child that runs `body` with the watcher installed and stderr in `err`; returns its
// exit status.
template <class Body>
int in_watched_child(const fs::path& err, Body&& body) {
    pid_t pid = ::fork();
    if (pid == 0) {
        int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(fd, 2);
        install_interrupt_watcher("testing");
        body();
        ::_exit(0);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(InterruptWatcher, RemovesLiveTemporariesPrintsOneLineAndExits128PlusSignal) {
    TempDir d;
    const int rc = in_watched_child(d / "err", [&] {
        TempFile a(d / "a.gguf"), b(d / "b.gguf");
        register_kept_partial(d / "x.cmf-partial");
        test::write_file(d / "x.cmf-partial", "resumable");
        ::kill(::getpid(), SIGTERM);
        for (;;) ::pause();
    });
    EXPECT_EQ(rc, 143);
    EXPECT_EQ(test::read_file(d / "err"), "cmf: interrupted by SIGTERM while testing; removed 2 temporary files; kept 1 resumable "
                                          "partial download (" + (d / "x.cmf-partial").string() + ")\n");
    EXPECT_EQ(listing(d.path()), (std::set<std::string>{"err", "x.cmf-partial"}));
}

TEST(InterruptWatcher, DeferralHoldsTheExitUntilTheSectionEnds) {
    TempDir d;
    const int rc = in_watched_child(d / "err", [&] {
        std::vector<std::unique_ptr<TempFile>> ts;
        {
            InterruptDeferral hold;
            ::kill(::getpid(), SIGINT);
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            test::write_file(d / "section-finished", "");
        }
        for (;;) ::pause();
    });
    EXPECT_EQ(rc, 130);
    EXPECT_TRUE(fs::exists(d / "section-finished"));
    EXPECT_EQ(test::read_file(d / "err"), "cmf: interrupted by SIGINT while testing; removed 0 temporary files\n");
}

TEST(InterruptWatcher, ASectionWithItsOwnHandlerGetsTheSignalInstead) {
    TempDir d;
    const int rc = in_watched_child(d / "err", [&] {
        std::atomic<int> got{0};
        InterruptDeferral mine([&](int sig) { got = sig; });
        ::kill(::getpid(), SIGINT);
        for (int i = 0; i < 200 && !got; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        ::_exit(got == SIGINT ? 42 : 1);
    });
    EXPECT_EQ(rc, 42);
    EXPECT_EQ(test::read_file(d / "err"), "");
}

}  // namespace
}  // namespace cmf
