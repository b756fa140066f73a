# Makes a CUDA kernel source compile as host C++ under emu.h: the dynamic
# `extern __shared__` array becomes a pointer to the launch's buffer, static
# `__shared__` arrays become statics (blocks run one at a time, so that is
# per-block memory), and `extern "C"` goes (the emulator calls the kernels
# as C++ functions).
s/extern __shared__ unsigned char \([A-Za-z_0-9]*\)\[\];/unsigned char* \1 = emu_dynamic_smem;/
s/__shared__/static/g
s/extern "C" //
