using OrasStaging.Compression;
using OrasStaging.IO;

namespace OrasStaging.DiskImages;

/// <summary>
/// File to file: native whenever the input decodes to raw (or fixed VHD, or qcow2 kept as qcow2) and the target is
/// qcow2, raw or fixed VHD; qemu-img for the rest.
/// </summary>
public static class DiskImageConverter
{
    /// <summary>
    /// Converts <paramref name="inputPath"/> (compressed or not) into a new file at <paramref name="outputPath"/>
    /// (FileMode.CreateNew). The caller deletes outputPath on failure. Temporary files (for qemu-img, which needs a
    /// seekable decoded input) live beside outputPath and are removed on every path out.
    /// </summary>
    public static async Task<DiskWriteResult> ConvertFileAsync(
        string inputPath, string outputPath, DiskWriteOptions options, IOperationSink sink, CancellationToken ct)
    {
        options.Validate();
        var (kind, source, tar) = Probe(inputPath);
        long inputLength = new FileInfo(inputPath).Length;
        var native = options.Clone();
        native.InputLength = inputLength;
        native.DisplayName ??= Path.GetFileName(outputPath);

        if (source == SourceFormat.Qcow2 && options.Format.IsNative())
        {
            return await ConvertQcow2Async(inputPath, kind, tar, outputPath, native, sink, ct).ConfigureAwait(false);
        }

        if (options.Format.IsNative() && source == SourceFormat.Raw)
        {
            await using var input = OpenRead(inputPath);
            return await DiskImageWriter.WriteAsync(input, outputPath, native, sink, ct).ConfigureAwait(false);
        }

        var qemu = QemuImg.Locate(options.QemuImgPath,
            source != SourceFormat.Raw ? $"to read {source} input" : $"to write {options.Format}");
        sink.Verbose($"Using {qemu.Path} for {source} -> {options.Format}.");
        var temps = new List<PartialFile>();
        try
        {
            string qemuInput = inputPath;
            if (kind != CompressionKind.None || tar)
            {
                // qemu-img needs random access to its input (and the disk out of a containerDisk's tar).
                var decoded = PartialFile.HiddenBeside(outputPath, "decoded");
                temps.Add(decoded);
                qemuInput = decoded.PartialPath;
                await using var input = OpenRead(inputPath);
                await DiskImageWriter.ExpandAsync(input, qemuInput, inputLength, native.DisplayName, sink, ct).ConfigureAwait(false);
            }

            string sourceName = source == SourceFormat.Raw && HasFixedVhdFooter(qemuInput) ? "vpc" : QemuImg.FormatName(source);
            if (source == SourceFormat.Qcow2)
            {
                using (Qcow2.Qcow2Image.Open(qemuInput))
                {
                    // The native check refuses backing and data files before qemu-img could follow them.
                }
            }

            await QemuImgInput.CheckAsync(qemu, qemuInput, sourceName, sink, ct).ConfigureAwait(false);
            if (options.Format.IsNative())
            {
                // Non-native input, native target: qemu-img to sparse raw, then our writer for growth and layout.
                var rawTemp = PartialFile.HiddenBeside(outputPath, "raw");
                temps.Add(rawTemp);
                string raw = rawTemp.PartialPath;
                sink.Progress(new ProgressInfo($"Converting {Path.GetFileName(inputPath)}", "qemu-img", 0, null));
                await qemu.RunAsync(new[] { "convert", "-f", sourceName, "-O", "raw", qemuInput, raw }, ct).ConfigureAwait(false);
                await using var rawInput = OpenRead(raw);
                native.InputLength = null;
                var r = await DiskImageWriter.WriteAsync(rawInput, outputPath, native, sink, ct).ConfigureAwait(false);
                return r with { Compression = kind, InputBytes = inputLength };
            }

            string target = QemuImg.FormatName(options.Format);
            sink.Progress(new ProgressInfo($"Converting {Path.GetFileName(inputPath)}", "qemu-img", 0, null));
            long sourceSize = await qemu.VirtualSizeAsync(qemuInput, sourceName, ct).ConfigureAwait(false);
            if (options.GrowBy != 0 || options.Size is not null)
            {
                long size = WriteSizes.VirtualSize(sourceSize, options);
                await qemu.RunAsync(new[] { "create", "-q", "-f", target, outputPath, size.ToString(System.Globalization.CultureInfo.InvariantCulture) }, ct).ConfigureAwait(false);
                await qemu.RunAsync(new[] { "convert", "-n", "--target-is-zero", "-f", sourceName, "-O", target, qemuInput, outputPath }, ct).ConfigureAwait(false);
            }
            else
            {
                if (File.Exists(outputPath))
                {
                    throw new IOException($"The file '{outputPath}' already exists.");
                }

                await qemu.RunAsync(new[] { "convert", "-f", sourceName, "-O", target, qemuInput, outputPath }, ct).ConfigureAwait(false);
            }

            long virtualSize = await qemu.VirtualSizeAsync(outputPath, target, ct).ConfigureAwait(false);
            long fileSize = new FileInfo(outputPath).Length;
            sink.Verbose($"qemu-img wrote {outputPath}: virtual size {Units.Bytes(virtualSize)}, file {Units.Bytes(fileSize)}.");
            return new DiskWriteResult(options.Format, virtualSize, fileSize, kind, inputLength, sourceSize);
        }
        finally
        {
            // Never committed: disposing deletes them.
            foreach (var temp in temps)
            {
                temp.Dispose();
            }
        }
    }

    /// <summary>
    /// A qcow2 input to a native target, with no qemu-img. A local uncompressed file is checked in full, then
    /// copied as is (and grown in place) or decoded by random access with no temporary file; a compressed one
    /// goes through the stream path, which decodes it as it comes (spooling only data that precedes its tables).
    /// </summary>
    private static async Task<DiskWriteResult> ConvertQcow2Async(
        string inputPath, CompressionKind kind, bool tar, string outputPath, DiskWriteOptions options, IOperationSink sink, CancellationToken ct)
    {
        // A local plain qcow2 is read by random access; a compressed one or one inside a tar goes through the stream path.
        if (kind == CompressionKind.None && !tar)
        {
            using var image = Qcow2.Qcow2Image.Open(inputPath);
            if (!Qcow2Input.KeepsInput(options))
            {
                return await Task.Run(() => Qcow2Input.Decode(image, outputPath, options, sink, ct), ct).ConfigureAwait(false);
            }

            Qcow2Input.TargetSize(image.VirtualSize, options, image.Header);
            sink.Verbose("The input is qcow2 and so is the target: copying it as is" + (options.GrowBy != 0 || options.Size is not null ? ", then growing it in place." : "."));
            return await Task.Run(() => Qcow2Input.CopyAndGrow(image, inputPath, outputPath, options, sink), ct).ConfigureAwait(false);
        }

        sink.Verbose(Qcow2Input.KeepsInput(options)
            ? "The input is qcow2 and so is the target: copying it as is" + (options.GrowBy != 0 || options.Size is not null ? ", then growing it in place." : ".")
            : $"The input is a compressed qcow2: decoding it natively to {options.Format.Name()} as it is decompressed.");
        try
        {
            await using var input = OpenRead(inputPath);
            return await DiskImageWriter.WriteAsync(input, outputPath, options, sink, ct).ConfigureAwait(false);
        }
        catch (OrasStagingException ex) when (Qcow2.Qcow2StreamDecoder.IsNotStreamable(ex))
        {
            // A local file can be read again: decompress it once beside the target and decode that by random access.
            sink.Verbose($"{ex.Message} Decompressing the qcow2 once to a spool beside the target instead (deleted after).");
            PartialFile.TryDelete(outputPath);
            using var spool = PartialFile.HiddenBeside(outputPath, "qcow2");
            await using (var again = OpenRead(inputPath))
            {
                await DiskImageWriter.ExpandAsync(again, spool.PartialPath, options.InputLength, options.DisplayName, sink, ct).ConfigureAwait(false);
            }

            using var image = Qcow2.Qcow2Image.Open(spool.PartialPath);
            return await Task.Run(() => Qcow2Input.Decode(image, outputPath, options, sink, ct), ct).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Decompresses only; the input must be compressed. This is Expand-DiskImage. When the decoded bytes are a
    /// qcow2 and <paramref name="format"/> is Raw or Vhd, the qcow2 is decoded too, natively.
    /// </summary>
    public static async Task<DiskWriteResult> ExpandFileAsync(
        string inputPath, string outputPath, IOperationSink sink, CancellationToken ct, string? displayName = null,
        DiskImageFormat? format = null)
    {
        var (kind, source, tar) = Probe(inputPath, decodeHead: format is DiskImageFormat.Raw or DiskImageFormat.Vhd);
        if (kind == CompressionKind.None && !tar)
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                $"'{inputPath}' is not compressed with gzip, zstd, xz or bzip2.",
                "Use Convert-DiskImage to change an image's format, or Copy-Item to copy it.");
        }

        if (source == SourceFormat.Qcow2 && format is { } wanted)
        {
            var options = new DiskWriteOptions { Format = wanted, InputLength = new FileInfo(inputPath).Length, DisplayName = displayName };
            return await ConvertQcow2Async(inputPath, kind, tar, outputPath, options, sink, ct).ConfigureAwait(false);
        }

        await using var input = OpenRead(inputPath);
        return await DiskImageWriter.ExpandAsync(input, outputPath, input.Length, displayName ?? Path.GetFileName(outputPath), sink, ct).ConfigureAwait(false);
    }

    /// <summary>The compression, the image format of the decoded bytes (of the disk member for a tar), and whether they are a tar.</summary>
    internal static (CompressionKind Kind, SourceFormat Source, bool Tar) Probe(string path, bool decodeHead = true)
    {
        using var input = OpenRead(path);
        var magic = new byte[CompressionDetector.PeekLength];
        int n = input.ReadAtLeast(magic, magic.Length, throwOnEndOfStream: false);
        if (CompressionDetector.UnsupportedCompression(magic.AsSpan(0, n)) is { } unsupported)
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat, $"'{path}' is {unsupported}-compressed, which is not supported.",
                "Decompress it first, or recompress with gzip, zstd, xz or bzip2.");
        }

        var kind = CompressionDetector.Detect(magic.AsSpan(0, n));
        if (!decodeHead)
        {
            // An uncompressed containerDisk layer (.tar) still has a disk to take out.
            var block = new byte[512];
            input.Position = 0;
            bool plainTar = kind == CompressionKind.None && input.ReadAtLeast(block, block.Length, throwOnEndOfStream: false) == block.Length
                && ImageFormatDetector.IsTar(block);
            return (kind, SourceFormat.Raw, plainTar);
        }

        input.Position = 0;
        var head = new byte[ImageFormatDetector.PeekLength];
        int got;
        bool tar;
        try
        {
            using Stream decoder = Decoders.Open(kind, input);
            using Stream decoded = TarMemberStream.Unwrap(decoder);
            tar = decoded is TarMemberStream;
            got = decoded.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        catch (Exception ex) when (ex is not OrasStagingException and not OperationCanceledException)
        {
            throw new OrasStagingException(ErrorCode.CorruptInput, $"'{path}' does not decode as {kind}: {ex.Message}",
                "Download the file again; if it persists, the file is damaged.", ex);
        }

        return (kind, ImageFormatDetector.Detect(head.AsSpan(0, got)), tar);
    }

    private static bool HasFixedVhdFooter(string path)
    {
        using var input = OpenRead(path);
        if (input.Length < VhdFooter.Length)
        {
            return false;
        }

        var footer = new byte[VhdFooter.Length];
        RandomAccess.Read(input.SafeFileHandle, footer, input.Length - VhdFooter.Length);
        return VhdFooter.IsFixedFooter(footer);
    }

    private static FileStream OpenRead(string path) =>
        new(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 20, FileOptions.SequentialScan);
}
