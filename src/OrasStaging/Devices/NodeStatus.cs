using System.Buffers.Binary;

namespace OrasStaging.Devices;

/// <summary>
/// What a path is, from stat(2): the file type bits of st_mode and the device numbers. On Linux this is statx,
/// whose layout is the same on every architecture (struct stat is not), so one reader serves x86_64 and arm64.
/// </summary>
internal readonly record struct NodeStatus(uint FileType, uint Major, uint Minor, uint FsMajor, uint FsMinor, uint DirectIoAlign)
{
    public const uint TypeMask = 0xF000;     // S_IFMT
    public const uint Fifo = 0x1000;          // S_IFIFO
    public const uint CharDevice = 0x2000;    // S_IFCHR
    public const uint Directory = 0x4000;     // S_IFDIR
    public const uint BlockDevice = 0x6000;   // S_IFBLK
    public const uint Regular = 0x8000;       // S_IFREG
    public const uint Symlink = 0xA000;       // S_IFLNK
    public const uint Socket = 0xC000;        // S_IFSOCK

    /// <summary>"major:minor" of the node itself (st_rdev), as /sys/dev/block and mountinfo spell it.</summary>
    public string DeviceNumber => $"{Major}:{Minor}";

    /// <summary>"major:minor" of the file system the path lives on (st_dev).</summary>
    public string FileSystemNumber => $"{FsMajor}:{FsMinor}";

    /// <summary>
    /// The status of <paramref name="path"/>, or null when it does not exist (ENOENT, ENOTDIR). Unix only.
    /// Any other failure (EACCES on a parent folder, ELOOP) is an <see cref="OrasStagingException"/>.
    /// </summary>
    public static NodeStatus? Get(string path, bool followLinks)
    {
        if (OperatingSystem.IsLinux())
        {
            var buffer = new byte[256];
            int flags = followLinks ? 0 : LinuxNative.AtSymlinkNoFollow;
            if (LinuxNative.statx(LinuxNative.AtFdCwd, path, flags, LinuxNative.StatxBasicStats | LinuxNative.StatxDioAlign, buffer) != 0)
            {
                return Missing(path, LinuxNative.LastError);
            }

            var b = buffer.AsSpan();
            uint mask = BinaryPrimitives.ReadUInt32LittleEndian(b);
            return new NodeStatus(
                BinaryPrimitives.ReadUInt16LittleEndian(b[28..]) & TypeMask,
                BinaryPrimitives.ReadUInt32LittleEndian(b[128..]), BinaryPrimitives.ReadUInt32LittleEndian(b[132..]),
                BinaryPrimitives.ReadUInt32LittleEndian(b[136..]), BinaryPrimitives.ReadUInt32LittleEndian(b[140..]),
                (mask & LinuxNative.StatxDioAlign) != 0 ? BinaryPrimitives.ReadUInt32LittleEndian(b[156..]) : 0);
        }

        if (OperatingSystem.IsMacOS())
        {
            var buffer = new byte[MacNative.StatSize];
            if (MacNative.Stat(path, buffer, followLinks) != 0)
            {
                return Missing(path, System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
            }

            var b = buffer.AsSpan();
            uint dev = BinaryPrimitives.ReadUInt32LittleEndian(b);
            uint rdev = BinaryPrimitives.ReadUInt32LittleEndian(b[24..]);
            return new NodeStatus(BinaryPrimitives.ReadUInt16LittleEndian(b[4..]) & TypeMask,
                (rdev >> 24) & 0xFF, rdev & 0xFFFFFF, (dev >> 24) & 0xFF, dev & 0xFFFFFF, 0);
        }

        throw new PlatformNotSupportedException("NodeStatus is for Unix.");
    }

    private static NodeStatus? Missing(string path, int errno) =>
        errno is LinuxNative.ENoEnt or LinuxNative.ENotDir
            ? null
            : throw new OrasStagingException(
                errno is LinuxNative.EAcces or LinuxNative.EPerm ? ErrorCode.DestinationNotWritable : ErrorCode.InvalidArgument,
                $"Cannot inspect '{path}': {LinuxNative.Describe(errno)}.",
                "Check the path and the permissions of the folders above it.");
}
