namespace OrasStaging.DiskImages;

/// <summary>The option maths of a write: the virtual size that -GrowBy or -Size asks for, in the units each format keeps.</summary>
internal static class WriteSizes
{
    /// <summary>The virtual size for a native target: the input rounded up to 512, plus growth, or the exact Size.</summary>
    public static long VirtualSize(long decodedLength, DiskWriteOptions options)
    {
        long baseSize = RoundUp(decodedLength, 512);
        long size;
        if (options.Size is { } exact)
        {
            if (exact < decodedLength)
            {
                throw new OrasStagingException(ErrorCode.InvalidArgument,
                    $"Size {Units.Bytes(exact)} ({exact} bytes) is below the input's {Units.Bytes(decodedLength)} ({decodedLength} bytes).",
                    "Give a Size at least as large as the image, or use GrowBy.");
            }

            size = RoundUp(exact, 512);
        }
        else if (options.Format == DiskImageFormat.Raw && options.GrowBy == 0)
        {
            // A plain raw copy keeps the exact length, like gunzip would.
            return decodedLength;
        }
        else
        {
            size = RoundUp(baseSize + options.GrowBy, 512);
        }

        return options.Format == DiskImageFormat.Vhd ? VhdFooter.RoundToMiB(size) : size;
    }

    public static long RoundUp(long value, long unit) => (value + unit - 1) / unit * unit;
}
