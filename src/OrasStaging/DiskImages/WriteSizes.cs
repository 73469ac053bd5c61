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

    /// <summary>The largest virtual size the one-pass qcow2 writer addresses: qemu's 32 MiB L1 at 64 KiB clusters (2 PiB).</summary>
    public const long MaxQcow2Size = Qcow2.Qcow2Header.MaxL1Bytes / 8 * Qcow2Layout.BytesPerL2;

    /// <summary>Any other target: far beyond any disk, and far enough from long.MaxValue that sums cannot overflow.</summary>
    public const long MaxSize = 1L << 60;

    /// <summary>The up-front check of -GrowBy and -Size: InvalidArgument when they overflow or exceed what the format addresses.</summary>
    public static void CheckRange(DiskWriteOptions options)
    {
        long max = options.Format == DiskImageFormat.Qcow2 ? MaxQcow2Size : MaxSize;
        if (options.GrowBy > max || options.Size > max)
        {
            string what = options.Size is { } s ? $"Size {s}" : $"GrowBy {options.GrowBy}";
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"{what} bytes is beyond the {Units.Bytes(max)} a {options.Format.Name()} image can address here.",
                "Give a smaller -GrowBy or -Size.");
        }
    }

    /// <summary>
    /// The bound on decoded bytes, checked as each buffer arrives so that a small blob that inflates without end
    /// fails as soon as it passes the bound, not once the disk is full. <paramref name="rawInput"/>: the decoded
    /// bytes are the disk itself, so -Size bounds them too (with a fixed VHD's footer, dropped at the end).
    /// </summary>
    public static void CheckDecoded(long decoded, DiskWriteOptions options, bool rawInput)
    {
        if (options.MaxDecodedBytes is { } declared && decoded > declared)
        {
            throw new OrasStagingException(ErrorCode.CorruptInput,
                $"The input decodes to more than the {Units.Bytes(declared)} ({declared} bytes) its artifact declares.",
                "The published artifact is damaged or its metadata is wrong; ask its publisher.");
        }

        if (rawInput && options.Size is { } exact && decoded - VhdFooter.Length > exact)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"Size {Units.Bytes(exact)} ({exact} bytes) is below the input, which already decodes to more than {decoded} bytes.",
                "Give a Size at least as large as the image, or use GrowBy.");
        }
    }
}
