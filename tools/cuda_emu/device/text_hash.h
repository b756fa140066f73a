// text_hash.h: FNV-1a over a kernel source's text, so the emulated device
// can tell that a program handed to it is the text it was built from.
#pragma once
#include <cstddef>

inline unsigned long long emu_text_hash(const char* s, size_t n) {
    unsigned long long h = 1469598103934665603ull;
    for (size_t i = 0; i < n; ++i) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}
