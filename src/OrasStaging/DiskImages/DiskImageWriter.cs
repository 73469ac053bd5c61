using OrasStaging.Compression;
using OrasStaging.IO;

namespace OrasStaging.DiskImages;

/// <summary>
/// Decode-and-write in one pass: a decoder thread (<see cref="DecodePump"/>) fills 1 MiB buffers from the
/// (compressed) input and a writer thread zero-checks and writes them, with a bounded set of buffers between them.
/// </summary>
public static class DiskImageWriter
{
    /// <summary>
    /// Reads <paramref name="input"/> (compressed or not, told by its magic bytes) once, sequentially, to its end,
    /// and writes the target format into a new file at <paramref name="outputPath"/> (FileMode.CreateNew), flushed
    /// to disk when the task ends. Native targets only (Qcow2, Raw, Vhd); the caller deletes outputPath on failure.
    /// Exceptions from input.Read propagate unchanged.
    /// </summary>
    public static Task<DiskWriteResult> WriteAsync(
        Stream input, string outputPath, DiskWriteOptions options, IOperationSink sink, CancellationToken ct) =>
        WriteCoreAsync(input, outputPath, options, expandOnly: false, sink, ct);

    /// <summary>Makes the target for the decoded bytes once their format is known (<paramref name="head"/>: the first chunk).</summary>
    internal delegate IImageTarget TargetFactory(ReadOnlySpan<byte> head, SourceFormat source);

    /// <summary>
    /// As <see cref="WriteAsync"/>, but into a target the caller makes (a block device, Devices/DeviceImageTarget):
    /// the same detection, decoding and fixed-VHD footer rule, no file created and no free-space check.
    /// <paramref name="displayPath"/> names the target in messages.
    /// </summary>
    internal static Task<DiskWriteResult> WriteToTargetAsync(
        Stream input, string displayPath, DiskWriteOptions options, TargetFactory factory, IOperationSink sink, CancellationToken ct) =>
        WriteCoreAsync(input, displayPath, options, expandOnly: false, sink, ct, factory);

    /// <summary>
    /// Decompresses only: the decoded bytes land as a sparse file, whatever image format they hold (a .qcow2.gz
    /// expands to the .qcow2). This is Expand-DiskImage.
    /// </summary>
    internal static Task<DiskWriteResult> ExpandAsync(
        Stream input, string outputPath, long? inputLength, string? displayName, IOperationSink sink, CancellationToken ct) =>
        WriteCoreAsync(input, outputPath, new DiskWriteOptions { Format = DiskImageFormat.Raw, InputLength = inputLength, DisplayName = displayName },
            expandOnly: true, sink, ct);

    private static async Task<DiskWriteResult> WriteCoreAsync(
        Stream input, string outputPath, DiskWriteOptions options, bool expandOnly, IOperationSink sink, CancellationToken ct,
        TargetFactory? factory = null)
    {
        options.ValidateNative("Use Convert-DiskImage, which calls qemu-img for VMDK, VHDX and VDI.");

        var counting = new CountingStream(input);
        var head = new byte[CompressionDetector.PeekLength];
        int headLength = DecodePump.ReadFull(counting, head, ct);
        Array.Resize(ref head, headLength);
        if (CompressionDetector.UnsupportedCompression(head) is { } unsupported)
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat, $"The input is {unsupported}-compressed, which is not supported.",
                "Decompress it first, or recompress with gzip, zstd, xz or bzip2.");
        }

        CompressionKind kind = CompressionDetector.Detect(head);
        string name = options.DisplayName ?? Path.GetFileName(outputPath);
        sink.Verbose($"Input compression: {kind}; writing {(expandOnly ? "decoded bytes" : options.Format.ToString())} to {name}.");
        sink.Verbose($"Decoder: {Decoders.Describe(kind)}.");
        if (kind != CompressionKind.None && options.InputLength is { } compressedLength && factory is null && !options.ReuseOutput)
        {
            // The output is at least about as large as the compressed data; anything less cannot fit.
            DiskSpace.Require(outputPath, compressedLength);
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var pipe = new ChunkPipe(DecodePump.Buffers, DecodePump.ChunkSize, linked.Token);
        var prefixed = new PrefixedStream(head, counting);

        // Both stages on dedicated threads (one per core on a 2-core machine): they block on each other and on
        // the input, and blocked pool threads in a fresh process starve the async fetch feeding the decoder.
        Task producer = Task.Factory.StartNew(
            () => DecodePump.Decode(kind, prefixed, counting, pipe, linked.Token, options.TarMember),
            linked.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        try
        {
            return await Task.Factory.StartNew(
                () => Consume(pipe, outputPath, options, expandOnly, kind, counting, name, sink, factory, linked.Token),
                linked.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
        }
        catch
        {
            linked.Cancel();
            throw;
        }
        finally
        {
            // The input belongs to the caller: it is not read after this method returns.
            try
            {
                await producer.ConfigureAwait(false);
            }
            catch
            {
                // The consumer has already seen the producer's failure through the channel.
            }
        }
    }

    private static DiskWriteResult Consume(
        ChunkPipe pipe, string outputPath,
        DiskWriteOptions options, bool expandOnly, CompressionKind kind, CountingStream counting, string name,
        IOperationSink sink, TargetFactory? factory, CancellationToken ct)
    {
        IImageTarget? target = null;
        bool stripFooter = false;
        long decoded = 0;
        (byte[] Buffer, int Count)? prev = null;
        (byte[] Buffer, int Count)? last = null;
        string activity = $"Writing {name}";
        try
        {
            while (true)
            {
                if (!pipe.Take(out var chunk))
                {
                    break;
                }

                if (target is null)
                {
                    (target, stripFooter) = OpenTarget(chunk.Buffer.AsSpan(0, chunk.Count), outputPath, options, expandOnly, sink, factory, ct);
                }

                decoded += chunk.Count;
                WriteSizes.CheckDecoded(decoded, options, rawInput: target is not Qcow2InputTarget);
                if (chunk.Count < VhdFooter.Length && prev is not null)
                {
                    // A short final chunk: the footer, if any, straddles it and the one before.
                    last = chunk;
                    break;
                }

                if (prev is { } p)
                {
                    target.Append(p.Buffer, p.Count);
                    pipe.Return(p.Buffer);
                }

                prev = chunk;
                sink.Progress(new ProgressInfo(activity, "Write", counting.Count, options.InputLength));
            }

            ct.ThrowIfCancellationRequested();
            if (target is null)
            {
                // A 0-byte image.
                (target, stripFooter) = OpenTarget(ReadOnlySpan<byte>.Empty, outputPath, options, expandOnly, sink, factory, ct);
            }

            if (stripFooter && decoded >= VhdFooter.Length && VhdFooter.TrimFixedFooter(ref prev, ref last))
            {
                sink.Verbose("The input is a fixed VHD: its footer is dropped and its data taken as raw.");
                decoded -= VhdFooter.Length;
            }

            if (prev is { } final1 && final1.Count > 0)
            {
                target.Append(final1.Buffer, final1.Count);
            }

            if (last is { } final2)
            {
                target.Append(final2.Buffer, final2.Count);
            }

            long virtualSize = target is Qcow2InputTarget ? 0
                : expandOnly ? decoded
                : WriteSizes.VirtualSize(decoded, options);
            if (options.Format == DiskImageFormat.Vhd && !expandOnly && virtualSize > VhdFooter.MaxQemuSize)
            {
                sink.Warning($"A {Units.Bytes(virtualSize)} VHD is beyond the 2040 GiB that qemu and Hyper-V read; Azure accepts it.");
            }

            sink.Progress(new ProgressInfo(activity, "Flush", counting.Count, options.InputLength));
            var (vsize, fileSize) = target.Finish(decoded, virtualSize);
            if (target.File is { Reused: true } reused)
            {
                sink.Verbose($"Reused the partial image an unfinished run left: {Units.Bytes(reused.Matched)} were already there, {Units.Bytes(reused.Rewritten)} written or cleared.");
            }

            sink.Verbose($"Wrote {name}: {Units.Bytes(decoded)} decoded from {Units.Bytes(counting.Count)}, virtual size {Units.Bytes(vsize)}, file {Units.Bytes(fileSize)}.");
            var format = target is Qcow2InputTarget q ? q.Format : options.Format;
            return new DiskWriteResult(format, vsize, fileSize, kind, counting.Count, decoded);
        }
        catch (IOException io) when (DiskSpace.IsDiskFull(io))
        {
            throw DiskSpace.Full(outputPath, io);
        }
        finally
        {
            target?.Dispose();
        }
    }

    private static (IImageTarget Target, bool StripFooter) OpenTarget(
        ReadOnlySpan<byte> head, string outputPath, DiskWriteOptions options, bool expandOnly, IOperationSink sink,
        TargetFactory? factory, CancellationToken ct)
    {
        SourceFormat source = expandOnly ? SourceFormat.Raw : ImageFormatDetector.Detect(head);
        if (!expandOnly)
        {
            sink.Verbose($"Image format of the decoded bytes: {(source == SourceFormat.Raw ? ImageFormatDetector.DescribeRaw(head) : source.ToString())}.");
        }

        if (factory is not null && source is SourceFormat.Raw or SourceFormat.Qcow2)
        {
            return (factory(head, source), source == SourceFormat.Raw);
        }

        if (source == SourceFormat.Qcow2)
        {
            if (options.ReuseOutput)
            {
                // A qcow2 inside the layer is copied or decoded into a new file: an earlier partial is of no use to it.
                PartialFile.TryDelete(outputPath);
            }

            // Checked natively before a byte is written; kept as qcow2 (grown in place) or decoded after a spool.
            return (new Qcow2InputTarget(head, outputPath, options, sink, ct), false);
        }

        if (source != SourceFormat.Raw)
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                $"The input is a {source} image, which is not decoded natively.",
                "Use Convert-DiskImage with qemu-img installed (package qemu-utils), or publish a raw or qcow2 image.");
        }

        return (ImageFile.OpenWriter(outputPath, options.Format, options.ReuseOutput), !expandOnly);
    }
}
