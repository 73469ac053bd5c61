using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace OrasStaging.Devices;

/// <summary>
/// The libc calls the device code needs on Linux. Plain DllImport with byte refs and arrays, so the project needs
/// no unsafe code. Numbers are the kernel's (asm-generic); the two that differ between x86_64 and arm64 are chosen
/// at run time.
/// </summary>
internal static class LinuxNative
{
    public const int AtFdCwd = -100;
    public const int AtSymlinkNoFollow = 0x100;
    public const uint StatxBasicStats = 0x7ff;
    public const uint StatxDioAlign = 0x2000;

    public const int ORdOnly = 0;
    public const int ORdWr = 2;
    public const int OExcl = 0x80;       // on a block device without O_CREAT: exclusive claim, EBUSY when mounted or held
    public const int OCloExec = 0x80000;

    // O_DIRECT is 040000 on x86 but 0200000 on arm64 (arm64 moved it to make room for O_DIRECTORY).
    public static int ODirect => RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x10000 : 0x4000;

    public const int FGetFl = 3;
    public const int FSetFl = 4;

    public const uint BlkGetSize64 = 0x80081272;  // _IOR(0x12, 114, size_t)
    public const uint BlkSszGet = 0x1268;         // _IO(0x12, 104): logical block size
    public const uint BlkZeroOut = 0x127F;        // _IO(0x12, 127): zero a range, never unmapping it

    public const uint SyncFileRangeWaitBefore = 1;
    public const uint SyncFileRangeWrite = 2;
    public const uint SyncFileRangeWaitAfter = 4;

    public const int EPerm = 1;
    public const int ENoEnt = 2;
    public const int EIntr = 4;
    public const int EAcces = 13;
    public const int EBusy = 16;
    public const int ENotDir = 20;
    public const int EInval = 22;
    public const int ENotTy = 25;
    public const int ENoSpc = 28;
    public const int ERoFs = 30;
    public const int ENoSys = 38;
    public const int ELoop = 40;
    public const int EOpNotSupp = 95;

    [DllImport("libc", SetLastError = true)]
    public static extern int statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte[] buffer);

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    public static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", EntryPoint = "close", SetLastError = true)]
    public static extern int Close(int fd);

    public const int WOk = 2;

    /// <summary>access(2): whether the caller may open <paramref name="path"/> as <paramref name="mode"/> asks (W_OK), without opening it.</summary>
    [DllImport("libc", EntryPoint = "access", SetLastError = true)]
    public static extern int Access([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int mode);

    [DllImport("libc", EntryPoint = "pwrite", SetLastError = true)]
    public static extern nint PWrite(int fd, ref byte buffer, nint count, long offset);

    [DllImport("libc", EntryPoint = "pread", SetLastError = true)]
    public static extern nint PRead(int fd, ref byte buffer, nint count, long offset);

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    public static extern int FSync(int fd);

    [DllImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    public static extern int SyncFileRange(int fd, long offset, long count, uint flags);

    public const int SeekData = 3;           // lseek whence: the next offset at or after the given one that holds data
    public const int ENxIo = 6;              // lseek SEEK_DATA: no data at or after the offset
    public const int FallocPunchHole = 0x02; // with FallocKeepSize: the range reads as zeros and frees its blocks
    public const int FallocKeepSize = 0x01;

    [DllImport("libc", EntryPoint = "lseek", SetLastError = true)]
    public static extern long LSeek(int fd, long offset, int whence);

    [DllImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    public static extern int FAllocate(int fd, int mode, long offset, long length);

    [DllImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static extern int FcntlInt(int fd, int cmd, int arg);

    [DllImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static extern int IoctlUInt64(int fd, nuint request, out ulong value);

    [DllImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static extern int IoctlInt(int fd, nuint request, out int value);

    [DllImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static extern int IoctlRange(int fd, nuint request, ulong[] range);

    public static int LastError => Marshal.GetLastPInvokeError();

    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}

/// <summary>macOS: stat (its own layout) and the disk ioctls. Code path only: not exercised by the tests.</summary>
internal static class MacNative
{
    public const int ORdOnly = 0;
    public const int ORdWr = 2;
    public const int OCloExec = 0x1000000;
    public const uint DkiocGetBlockSize = 0x40046418;   // _IOR('d', 24, uint32_t)
    public const uint DkiocGetBlockCount = 0x40086419;  // _IOR('d', 25, uint64_t)

    // struct stat (64-bit inodes): st_dev int32 @0, st_mode uint16 @4, st_rdev int32 @24; 144 bytes.
    public const int StatSize = 144;

    [DllImport("libc", EntryPoint = "stat", SetLastError = true)]
    private static extern int StatArm64([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte[] buffer);

    [DllImport("libc", EntryPoint = "stat$INODE64", SetLastError = true)]
    private static extern int StatX64([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte[] buffer);

    [DllImport("libc", EntryPoint = "lstat", SetLastError = true)]
    private static extern int LStatArm64([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte[] buffer);

    [DllImport("libc", EntryPoint = "lstat$INODE64", SetLastError = true)]
    private static extern int LStatX64([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte[] buffer);

    public static int Stat(string path, byte[] buffer, bool follow) =>
        RuntimeInformation.ProcessArchitecture == Architecture.Arm64
            ? (follow ? StatArm64(path, buffer) : LStatArm64(path, buffer))
            : (follow ? StatX64(path, buffer) : LStatX64(path, buffer));

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    public static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", EntryPoint = "close", SetLastError = true)]
    public static extern int Close(int fd);

    // ioctl is variadic. On Apple arm64 variadic arguments travel on the stack, not in registers, so the pointer is
    // passed as the ninth integer argument (the first one on the stack) after six unused register slots.
    [DllImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static extern int IoctlStackArm64(int fd, nuint request, long r2, long r3, long r4, long r5, long r6, long r7, out ulong value);

    [DllImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static extern int IoctlX64(int fd, nuint request, out ulong value);

    public static int IoctlUInt64(int fd, uint request, out ulong value)
    {
        value = 0;
        int rc = RuntimeInformation.ProcessArchitecture == Architecture.Arm64
            ? IoctlStackArm64(fd, request, 0, 0, 0, 0, 0, 0, out value)
            : IoctlX64(fd, request, out value);
        if (request == DkiocGetBlockSize)
        {
            value &= 0xFFFFFFFF; // a uint32_t result fills only the low half
        }

        return rc;
    }
}

/// <summary>Windows: the disk length of a \\.\PhysicalDriveN. Code path only: not exercised by the tests.</summary>
internal static class WindowsNative
{
    public const uint IoctlDiskGetLengthInfo = 0x0007405C;
    private const uint FileShareReadWrite = 3;
    private const uint OpenExisting = 3;

    /// <summary>Opens a device with no access rights: allowed to anyone, and enough to ask for its length.</summary>
    public static SafeFileHandle OpenForQuery(string path) =>
        CreateFileW(path, 0, FileShareReadWrite, IntPtr.Zero, OpenExisting, 0, IntPtr.Zero);

    [DllImport("kernel32.dll", SetLastError = true, CharSet = CharSet.Unicode)]
    private static extern SafeFileHandle CreateFileW(
        string fileName, uint desiredAccess, uint shareMode, IntPtr securityAttributes, uint creationDisposition, uint flags, IntPtr template);

    [DllImport("kernel32.dll", SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    public static extern bool DeviceIoControl(
        SafeFileHandle device, uint ioControlCode, IntPtr inBuffer, int inBufferSize,
        out long outBuffer, int outBufferSize, out int bytesReturned, IntPtr overlapped);
}
