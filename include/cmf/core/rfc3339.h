// RFC 3339 UTC timestamps as Google's APIs write them ("2026-12-07T11:00:00Z", GCS's
// "…T13:00:00.123Z", Secret Manager's createTime / expireTime).
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace cmf {

// "YYYY-MM-DDTHH:MM:SSZ"
inline std::string format_rfc3339(std::chrono::system_clock::time_point t = std::chrono::system_clock::now()) {
    const std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// Seconds precision; fractions and a "Z" suffix are accepted. The epoch when unparsable.
inline std::chrono::system_clock::time_point parse_rfc3339(const std::string& s) {
    std::tm tm{};
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
    if (std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6) return {};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

}  // namespace cmf
