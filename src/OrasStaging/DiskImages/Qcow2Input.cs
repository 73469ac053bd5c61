using OrasStaging.DiskImages.Qcow2;
using OrasStaging.IO;

namespace OrasStaging.DiskImages;

/// <summary>
/// A qcow2 input, natively: checked before a byte is copied, then kept as is (grown in place for -GrowBy/-Size)
/// or decoded through <see cref="Qcow2Reader"/> to raw, fixed VHD or a re-encoded qcow2.
/// </summary>
internal static class Qcow2Input
{
    /// <summary>
    /// The header check of the first decoded bytes: a backing file, an external data file, encryption or an
    /// unknown incompatible bit is UnsupportedFormat here, before anything is written (qemu would follow those
    /// paths and embed the host's files in the output). The tables are checked in full once the file is whole.
    /// </summary>
    public static Qcow2Header CheckHead(ReadOnlySpan<byte> head, long? fileLength) =>
        Qcow2Header.Parse(head[..Math.Min(head.Length, 2 << 20)], fileLength ?? long.MaxValue);

    /// <summary>Whether a qcow2 input is copied as is (and grown in place): a qcow2 target without Reencode.</summary>
    public static bool KeepsInput(DiskWriteOptions options) => options.Format == DiskImageFormat.Qcow2 && !options.Reencode;

    /// <summary>The virtual size of the output for a qcow2 of <paramref name="inputSize"/> bytes: kept exactly when nothing asks for growth.</summary>
    public static long TargetSize(long inputSize, DiskWriteOptions options, Qcow2Header? growing = null)
    {
        long size = options.GrowBy == 0 && options.Size is null && options.Format != DiskImageFormat.Vhd
            ? inputSize
            : WriteSizes.VirtualSize(inputSize, options);
        if (growing is { } h && size != inputSize)
        {
            // Growth keeps the input's cluster size, whose L1 limit may be far below the 2 PiB of 64 KiB clusters.
            long max = Qcow2Header.MaxL1Bytes / 8 * h.BytesPerL2;
            if (size > max)
            {
                throw new OrasStagingException(ErrorCode.InvalidArgument,
                    $"A virtual size of {size} bytes is beyond the {Units.Bytes(max)} a qcow2 of {h.ClusterSize}-byte clusters can address.",
                    "Give a smaller -GrowBy or -Size, or re-encode the image with 64 KiB clusters first.");
            }
        }

        return size;
    }

    /// <summary>Decodes a checked image into a new file at <paramref name="outputPath"/> in options.Format.</summary>
    public static DiskWriteResult Decode(Qcow2Image image, string outputPath, DiskWriteOptions options, IOperationSink sink, CancellationToken ct)
    {
        long size = TargetSize(image.VirtualSize, options);
        if (image.VirtualSize > 0 && !image.CanStream(out string? why))
        {
            sink.Verbose($"The qcow2 layout is read by random access ({why}).");
        }

        using IImageTarget target = ImageFile.OpenWriter(outputPath, options.Format);
        using var reader = new Qcow2Reader(image);
        try
        {
            reader.CopyTo(target, ct);
            var (vsize, fileSize) = target.Finish(image.VirtualSize, size);
            sink.Verbose($"Decoded the qcow2 ({Units.Bytes(image.VirtualSize)} virtual) to {options.Format.Name()}: virtual size {Units.Bytes(vsize)}, file {Units.Bytes(fileSize)}.");
            return new DiskWriteResult(options.Format, vsize, fileSize, Compression.CompressionKind.None, image.FileLength, image.VirtualSize);
        }
        catch (IOException io) when (DiskSpace.IsDiskFull(io))
        {
            throw DiskSpace.Full(outputPath, io);
        }
    }

    /// <summary>
    /// A checked local qcow2 kept as qcow2: copied into the uncommitted <paramref name="outputPath"/> by the file
    /// system (File.Copy: a reflink where the file system has them, else copy_file_range, so no byte passes through
    /// this process), grown in place and flushed once (<see cref="GrowInPlaceAndFlush"/>). The grow re-checks the copy's mapping.
    /// </summary>
    public static DiskWriteResult CopyAndGrow(Qcow2Image input, string inputPath, string outputPath, DiskWriteOptions options, IOperationSink sink)
    {
        try
        {
            File.Copy(inputPath, outputPath, overwrite: false);
            MakeWritable(outputPath);
            long grown = GrowInPlaceAndFlush(outputPath, input.VirtualSize, options, sink);

            long length = new FileInfo(outputPath).Length;
            sink.Verbose($"Copied the qcow2 ({Units.Bytes(input.FileLength)}) as is: virtual size {Units.Bytes(grown)}, file {Units.Bytes(length)}.");
            return new DiskWriteResult(DiskImageFormat.Qcow2, grown, length, Compression.CompressionKind.None, input.FileLength, input.FileLength);
        }
        catch (IOException io) when (DiskSpace.IsDiskFull(io))
        {
            throw DiskSpace.Full(outputPath, io);
        }
    }

    /// <summary>File.Copy keeps the source's mode or attributes; a read-only source must not make a read-only target.</summary>
    private static void MakeWritable(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            File.SetAttributes(path, File.GetAttributes(path) & ~FileAttributes.ReadOnly);
        }
        else
        {
            File.SetUnixFileMode(path, File.GetUnixFileMode(path) | UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }

    /// <summary>
    /// Grows the copy at <paramref name="path"/> in place when the options ask for a larger virtual size, then
    /// flushes it to disk once, for the copy and the growth together: the copy is an uncommitted partial, so the
    /// grow's steps are not flushed one by one.
    /// </summary>
    public static long GrowInPlaceAndFlush(string path, long inputSize, DiskWriteOptions options, IOperationSink sink)
    {
        long size = TargetSize(inputSize, options);
        if (size != inputSize)
        {
            var grown = Qcow2Grow.Grow(path, size, flushSteps: false);
            sink.Verbose($"Grew the qcow2 in place from {Units.Bytes(grown.OldVirtualSize)} to {Units.Bytes(grown.NewVirtualSize)}{(grown.L1Moved ? " (L1 table moved)" : string.Empty)}.");
            size = grown.NewVirtualSize;
        }

        using (var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None, bufferSize: 0))
        {
            file.Flush(flushToDisk: true);
        }

        return size;
    }
}

/// <summary>
/// The target of a qcow2 input read from a stream. Kept as qcow2: the bytes are copied densely into the output,
/// checked, then grown in place. Decoded (raw, fixed VHD, or qcow2 with Reencode): straight through
/// <see cref="Qcow2StreamDecoder"/> into the image writer, which spools only what arrives before the table
/// mapping it. Nothing is written before the header is checked.
/// </summary>
internal sealed class Qcow2InputTarget : IImageTarget
{
    private readonly string _outputPath;
    private readonly DiskWriteOptions _options;
    private readonly IOperationSink _sink;
    private readonly FileStream? _file;
    private readonly IImageTarget? _image;
    private readonly Qcow2StreamDecoder? _decoder;
    private readonly Qcow2Header _header;
    private readonly long _bound;
    private long _position;

    public Qcow2InputTarget(ReadOnlySpan<byte> head, string outputPath, DiskWriteOptions options, IOperationSink sink, CancellationToken ct)
    {
        _header = Qcow2Input.CheckHead(head, null);
        bool keep = Qcow2Input.KeepsInput(options);
        Qcow2Input.TargetSize(_header.VirtualSize, options, keep ? _header : null); // -Size below the input fails before any byte is written.
        _outputPath = outputPath;
        _options = options;
        _sink = sink;

        // A dense copy writes every decoded byte: it cannot be larger than the free space.
        _bound = DiskSpace.Available(outputPath) ?? long.MaxValue;
        if (keep)
        {
            _file = new FileStream(outputPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, bufferSize: 0);
            return;
        }

        _image = ImageFile.OpenWriter(outputPath, options.Format);
        try
        {
            _decoder = new Qcow2StreamDecoder(_header, _image, outputPath, spool => sink.Verbose(
                $"The qcow2 stream stores data ahead of the tables that map it: spooling that part once to {spool} beside the target (deleted after)."));
        }
        catch
        {
            _image.Dispose();
            throw;
        }
    }

    public DiskImageFormat Format => _options.Format;

    public void Append(byte[] buffer, int count)
    {
        if (_decoder is not null)
        {
            _decoder.Append(buffer, count);
            return;
        }

        if (count > _bound - _position)
        {
            throw new OrasStagingException(ErrorCode.InsufficientSpace,
                $"The qcow2 input passes the {Units.Bytes(_bound)} free beside '{_outputPath}'.",
                "Free space on that file system or stage elsewhere.");
        }

        RandomAccess.Write(_file!.SafeFileHandle, buffer.AsSpan(0, count), _position);
        _position += count;
    }

    public (long VirtualSize, long FileSize) Finish(long decodedLength, long virtualSize)
    {
        if (_decoder is not null)
        {
            _decoder.End();
            long size = Qcow2Input.TargetSize(_header.VirtualSize, _options);
            var result = _image!.Finish(_header.VirtualSize, size);
            _sink.Verbose(_decoder.SpooledBytes == 0
                ? $"Decoded the qcow2 stream directly to {_options.Format.Name()}, without a spool (its tables precede the data they map; peak {Units.Bytes(_decoder.PeakMemory)} held in memory)."
                : $"Decoded the qcow2 stream to {_options.Format.Name()} with {Units.Bytes(_decoder.SpooledBytes)} spooled beside the target.");
            return result;
        }

        _file!.Dispose();
        using (Qcow2Image.Open(_outputPath))
        {
            // The whole mapping is checked before the copy is grown or handed back.
        }

        long grown = Qcow2Input.GrowInPlaceAndFlush(_outputPath, _header.VirtualSize, _options, _sink);

        return (grown, new FileInfo(_outputPath).Length);
    }

    public void Dispose()
    {
        _decoder?.Dispose();
        _image?.Dispose();
        _file?.Dispose();
    }
}
