// DirectWriter (include/cmf/format/direct_writer.h): scattered concurrent writes into aligned
// segments must give exactly the file plain pwrites would, whether segments go out by O_DIRECT,
// are spilled under memory pressure, or O_DIRECT is unavailable; missing or doubled bytes are
// reported instead of written.
#include "cmf/format/direct_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include "cmf/core/error.h"
#include "test_support.h"

namespace cmf {
namespace {

namespace fs = std::filesystem;

struct Layout {
    std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [offset, size)
    uint64_t size = 0;
};

// Ranges of random sizes (a few bytes to a few MiB) separated by 0-31 byte gaps, like tensors
// at 32-byte alignment; the last range ends before the end of the file (trailing padding).
Layout random_layout(std::mt19937_64& rng, uint64_t target) {
    Layout l;
    uint64_t off = 0;
    std::uniform_int_distribution<int> kind(0, 9);
    while (off < target) {
        uint64_t n = kind(rng) < 3 ? 1 + rng() % 4096 : 1 + rng() % (3u << 20);
        l.ranges.emplace_back(off, n);
        off += n + rng() % 32;
    }
    l.size = off + 7;
    return l;
}

std::string expected_bytes(const Layout& l, const std::string& data) {
    std::string want(l.size, '\0');
    for (auto [o, n] : l.ranges) std::memcpy(&want[o], data.data() + o, n);
    return want;
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes every range (cut into random pieces) from `threads` threads in a shuffled order.
void write_all(DirectWriter& w, const Layout& l, const std::string& data, unsigned threads, uint64_t seed) {
    struct Piece {
        uint64_t off, n;
    };
    std::vector<Piece> pieces;
    std::mt19937_64 rng(seed);
    for (auto [o, n] : l.ranges) {
        uint64_t at = 0;
        while (at < n) {
            uint64_t k = std::min<uint64_t>(n - at, 1 + rng() % (1u << 20));
            pieces.push_back({o + at, k});
            at += k;
        }
    }
    // mostly in order with local disorder (as workers take chunks), plus a few far jumps
    for (size_t i = 0; i + 1 < pieces.size(); ++i)
        if (rng() % 3 == 0) std::swap(pieces[i], pieces[std::min(pieces.size() - 1, i + 1 + rng() % 8)]);
    for (int j = 0; j < 6 && pieces.size() > 2; ++j) std::swap(pieces[rng() % pieces.size()], pieces[rng() % pieces.size()]);
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&] {
            for (size_t i; (i = next++) < pieces.size();) w.write_at(data.data() + pieces[i].off, pieces[i].n, pieces[i].off);
        });
    for (auto& th : pool) th.join();
}

struct Case {
    const char* name;
    size_t max_segments;
    bool env_off;
};

void run_case(const fs::path& dir, const Case& c, uint64_t seed, bool expect_direct) {
    SCOPED_TRACE(std::string(c.name) + " seed " + std::to_string(seed) + " in " + dir.string());
    std::mt19937_64 rng(seed);
    Layout l = random_layout(rng, 40u << 20);
    std::string data(l.size, '\0');
    for (auto& ch : data) ch = static_cast<char>(rng());
    fs::path p = dir / ("out-" + std::to_string(seed) + ".bin");
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(l.size)), 0);
    if (c.env_off) ::setenv("CMF_DIRECT_IO", "0", 1);
    {
        DirectWriter w(fd, p.string(), l.ranges, l.size, p.string(), c.max_segments);
        if (c.env_off) ::unsetenv("CMF_DIRECT_IO");
        if (expect_direct) {
            EXPECT_EQ(w.direct(), !c.env_off);
        }
        write_all(w, l, data, 4, seed * 7 + 1);
        w.flush();
        if (w.direct() && c.max_segments == 1) {
            EXPECT_GT(w.spilled_segments(), 0u) << "the case meant to spill did not";
        }
    }
    ASSERT_EQ(::fsync(fd), 0);
    ::close(fd);
    std::string got = read_file(p);
    ASSERT_EQ(got.size(), l.size);
    EXPECT_TRUE(got == expected_bytes(l, data)) << "file differs from the plain-pwrite result";
}

const Case kCases[] = {{"default", DirectWriter::kMaxSegments, false},
                       {"one segment held (spills)", 1, false},
                       {"CMF_DIRECT_IO=0", DirectWriter::kMaxSegments, true}};

TEST(DirectWriter, ScatteredConcurrentWritesEqualPlainWrites) {
    test::TempDir dir;
    for (const auto& c : kCases)
        for (uint64_t seed = 1; seed <= 3; ++seed) run_case(dir.path(), c, seed, /*expect_direct=*/false);
}

TEST(DirectWriter, UsesODirectOnThisDisk) {
    test::TempDir dir;
    int fd = ::open((dir.path() / "probe").c_str(), O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
    if (fd < 0) GTEST_SKIP() << "SKIPPED: " << dir.path() << " does not accept O_DIRECT here";
    ::close(fd);
    run_case(dir.path(), kCases[0], 11, /*expect_direct=*/true);
}

TEST(DirectWriter, TmpfsGivesTheSameBytes) {
    if (!fs::is_directory("/dev/shm")) GTEST_SKIP() << "SKIPPED: no /dev/shm";
    fs::path d = fs::path("/dev/shm") / ("cmf-dw-" + std::to_string(::getpid()));
    fs::create_directories(d);
    for (const auto& c : kCases) run_case(d, c, 21, /*expect_direct=*/false);
    fs::remove_all(d);
}

TEST(DirectWriter, MissingAndDoubledBytesAreInternalErrors) {
    test::TempDir dir;
    fs::path p = dir.path() / "x.bin";
    const uint64_t size = (9u << 20) + 100;
    std::vector<std::pair<uint64_t, uint64_t>> ranges{{0, 5u << 20}, {(5u << 20) + 32, (4u << 20) + 60}};
    std::string data(size, 'x');
    for (int variant = 0; variant < 2; ++variant) {
        int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
        DirectWriter w(fd, p.string(), ranges, size, "x.bin");
        if (!w.direct()) {
            ::close(fd);
            GTEST_SKIP() << "SKIPPED: no O_DIRECT here, the checks live in the direct path";
        }
        try {
            w.write_at(data.data(), 5u << 20, 0);
            if (variant == 0) {
                w.write_at(data.data(), 1000, (5u << 20) + 32);  // the rest of range 2 never comes
                w.flush();
            } else {
                w.write_at(data.data(), 5u << 20, 0);  // range 1 again
            }
            ADD_FAILURE() << "variant " << variant << " was accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::internal);
            EXPECT_NE(std::string(e.what()).find(variant == 0 ? "never written" : "written twice"), std::string::npos) << e.what();
        }
        ::close(fd);
    }
}

}  // namespace
}  // namespace cmf
