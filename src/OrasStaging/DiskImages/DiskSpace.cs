namespace OrasStaging.DiskImages;

internal static class DiskSpace
{
    /// <summary>Fails up front when the destination volume cannot hold <paramref name="bytes"/>.</summary>
    public static void Require(string outputPath, long bytes)
    {
        long available;
        try
        {
            string? dir = Path.GetDirectoryName(Path.GetFullPath(outputPath));
            available = new DriveInfo(dir ?? outputPath).AvailableFreeSpace;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or UnauthorizedAccessException)
        {
            return; // Unknown volume (network share, odd mount): the write itself will tell.
        }

        if (available < bytes)
        {
            throw new OrasStagingException(ErrorCode.InsufficientSpace,
                $"The destination volume has {Units.Bytes(available)} free; the image needs at least {Units.Bytes(bytes)}.",
                "Free some space on the destination volume or choose another destination.");
        }
    }

    /// <summary>ENOSPC on Unix (28), ERROR_DISK_FULL / ERROR_HANDLE_DISK_FULL on Windows.</summary>
    public static bool IsDiskFull(IOException io)
    {
        int code = io.HResult & 0xFFFF;
        return code == 28 || code == 0x70 || code == 0x27;
    }

    public static OrasStagingException Full(string outputPath, IOException io) =>
        new(ErrorCode.InsufficientSpace, $"The destination volume ran out of space while writing '{outputPath}'.",
            "Free some space on the destination volume or choose another destination.", io);
}
