namespace OrasStaging.IO;

/// <summary>The one home of the free-space rules: how much a volume has, the up-front check, and "the disk is full".</summary>
internal static class DiskSpace
{
    private const string FreeSomeSpace = "Free some space on the destination volume or choose another destination.";

    /// <summary>Free bytes on the volume holding <paramref name="path"/> (a file or a folder), or null when unknown.</summary>
    public static long? Available(string path)
    {
        try
        {
            string full = Path.GetFullPath(path);
            string folder = Directory.Exists(full) ? full : Path.GetDirectoryName(full) ?? full;
            return new DriveInfo(folder).AvailableFreeSpace;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or UnauthorizedAccessException)
        {
            return null; // Unknown volume (network share, odd mount): the write itself will tell.
        }
    }

    /// <summary>
    /// Fails up front with <see cref="ErrorCode.InsufficientSpace"/> when the volume of <paramref name="path"/>
    /// cannot hold <paramref name="bytes"/>; <paramref name="what"/> names what needs it in the message.
    /// </summary>
    public static void Require(string path, long bytes, string? what = null, string? recommendedAction = null)
    {
        if (Available(path) is { } free && free < bytes)
        {
            throw new OrasStagingException(ErrorCode.InsufficientSpace,
                $"'{path}' has {Units.Bytes(free)} free; {what ?? "the image"} needs at least {Units.Bytes(bytes)}.",
                recommendedAction ?? FreeSomeSpace);
        }
    }

    /// <summary>
    /// The bytes a file's blocks take on its volume: statx's stx_blocks × 512 on Linux; elsewhere its length, which is
    /// more than a sparse file takes. 0 when it cannot be read.
    /// </summary>
    public static long AllocatedBytes(string path)
    {
        try
        {
            if (OperatingSystem.IsLinux())
            {
                var buffer = new byte[256];
                return Devices.LinuxNative.statx(Devices.LinuxNative.AtFdCwd, path, 0, Devices.LinuxNative.StatxBasicStats, buffer) == 0
                    ? (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(buffer.AsSpan(48)) * 512
                    : 0;
            }

            return new FileInfo(path).Length;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    /// <summary>ENOSPC (28) on Unix; ERROR_DISK_FULL / ERROR_HANDLE_DISK_FULL on Windows.</summary>
    public static bool IsDiskFull(Exception ex)
    {
        if (ex is not IOException io)
        {
            return false;
        }

        int code = io.HResult & 0xFFFF;
        return code == 28 || code == 0x70 || code == 0x27;
    }

    public static OrasStagingException Full(string path, Exception inner) =>
        new(ErrorCode.InsufficientSpace, $"The destination volume ran out of space while writing '{path}'.", FreeSomeSpace, inner);
}
