// fibers.h: the emulated device's kernel runner (fibers.cpp).
#pragma once
#include <functional>
#include <string>

struct EmuDim;

// Runs `kernel` over `grid` blocks of `block` threads with `smem` bytes of
// dynamic shared memory. Returns an empty string, or why the launch failed.
std::string emu_fiber_launch(EmuDim grid, EmuDim block, size_t smem, const std::function<void()>& kernel);
