/*
 * A stand-in bcryptprimitives.dll for running edgegate.exe under Debian 12's
 * Wine 8.0, which lacks it. FOR THE WINE TESTS ONLY: never shipped (real
 * Windows 10 and later have the real one; cross/build-windows.sh does not
 * put this in the zip).
 *
 * Rust's standard library on Windows draws its randomness from
 * bcryptprimitives.dll's ProcessPrng; without the DLL any Rust .exe stops at
 * start with STATUS_DLL_NOT_FOUND (c0000135). This exports ProcessPrng over
 * advapi32's SystemFunction036 (RtlGenRandom), which Wine has.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *        bcryptprimitives.c -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
