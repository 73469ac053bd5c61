using OrasStaging.Compression;

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
        DiskImageWriter.Validate(options);
        var (kind, source) = Probe(inputPath);
        long inputLength = new FileInfo(inputPath).Length;
        var native = new DiskWriteOptions
        {
            Format = options.Format,
            GrowBy = options.GrowBy,
            Size = options.Size,
            InputLength = inputLength,
            QemuImgPath = options.QemuImgPath,
            DisplayName = options.DisplayName ?? Path.GetFileName(outputPath),
        };

        bool qcow2Copy = source == SourceFormat.Qcow2 && options.Format == DiskImageFormat.Qcow2
            && options.GrowBy == 0 && options.Size is null;
        if (DiskImageWriter.IsNative(options.Format) && (source == SourceFormat.Raw || qcow2Copy))
        {
            if (qcow2Copy)
            {
                sink.Verbose("The input is qcow2 and so is the target, with no growth: copying it as is.");
            }

            await using var input = OpenRead(inputPath);
            return await DiskImageWriter.WriteAsync(input, outputPath, native, sink, ct).ConfigureAwait(false);
        }

        var qemu = QemuImg.Locate(options.QemuImgPath,
            source != SourceFormat.Raw ? $"to read {source} input" : $"to write {options.Format}");
        sink.Verbose($"Using {qemu.Path} for {source} -> {options.Format}.");
        var temps = new List<string>();
        try
        {
            string qemuInput = inputPath;
            if (kind != CompressionKind.None)
            {
                // qemu-img needs random access to its input.
                qemuInput = TempBeside(outputPath, "decoded");
                temps.Add(qemuInput);
                await using var input = OpenRead(inputPath);
                await DiskImageWriter.ExpandAsync(input, qemuInput, inputLength, native.DisplayName, sink, ct).ConfigureAwait(false);
            }

            string sourceName = source == SourceFormat.Raw && HasFixedVhdFooter(qemuInput) ? "vpc" : QemuImg.FormatName(source);
            if (DiskImageWriter.IsNative(options.Format))
            {
                // Non-native input, native target: qemu-img to sparse raw, then our writer for growth and layout.
                string raw = TempBeside(outputPath, "raw");
                temps.Add(raw);
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
                long size = DiskImageWriter.VirtualSize(sourceSize, new DiskWriteOptions
                {
                    Format = options.Format,
                    GrowBy = options.GrowBy,
                    Size = options.Size,
                });
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
            foreach (string temp in temps)
            {
                TryDelete(temp);
            }
        }
    }

    /// <summary>Decompresses only; the input must be compressed. This is Expand-DiskImage.</summary>
    public static async Task<DiskWriteResult> ExpandFileAsync(
        string inputPath, string outputPath, IOperationSink sink, CancellationToken ct, string? displayName = null)
    {
        var (kind, _) = Probe(inputPath, decodeHead: false);
        if (kind == CompressionKind.None)
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                $"'{inputPath}' is not compressed with gzip, zstd, xz or bzip2.",
                "Use Convert-DiskImage to change an image's format, or Copy-Item to copy it.");
        }

        await using var input = OpenRead(inputPath);
        return await DiskImageWriter.ExpandAsync(input, outputPath, input.Length, displayName ?? Path.GetFileName(outputPath), sink, ct).ConfigureAwait(false);
    }

    /// <summary>The compression, and the image format of the decoded bytes.</summary>
    internal static (CompressionKind Kind, SourceFormat Source) Probe(string path, bool decodeHead = true)
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
            return (kind, SourceFormat.Raw);
        }

        input.Position = 0;
        var head = new byte[ImageFormatDetector.PeekLength];
        int got;
        try
        {
            using Stream decoded = Decoders.Open(kind, input);
            got = decoded.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        catch (Exception ex) when (ex is not OrasStagingException and not OperationCanceledException)
        {
            throw new OrasStagingException(ErrorCode.CorruptInput, $"'{path}' does not decode as {kind}: {ex.Message}",
                "Download the file again; if it persists, the file is damaged.", ex);
        }

        return (kind, ImageFormatDetector.Detect(head.AsSpan(0, got)));
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

    internal static string TempBeside(string outputPath, string purpose) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(outputPath)) ?? ".",
            $".{Path.GetFileName(outputPath)}.{purpose}.{Guid.NewGuid().ToString("N")[..8]}.tmp");

    internal static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Best effort: a leftover temp file is named after the destination and starts with a dot.
        }
    }
}

/// <summary>Writes through a temporary file beside the destination, renamed into place only when complete.</summary>
public static class DestinationFile
{
    /// <summary>
    /// Fails with DestinationExists unless <paramref name="force"/>; runs <paramref name="write"/> against a new
    /// temporary path in the destination's folder; renames it over the destination on success and deletes it on
    /// any failure or cancellation, so nothing half-written is ever left behind.
    /// </summary>
    public static async Task<DiskWriteResult> WriteAsync(
        string destination, bool force, Func<string, Task<DiskWriteResult>> write)
    {
        CheckDestination(destination, force);
        string temp = DiskImageConverter.TempBeside(destination, "partial");
        try
        {
            var result = await write(temp).ConfigureAwait(false);
            CheckDestination(destination, force);
            File.Move(temp, destination, overwrite: force);
            return result;
        }
        catch
        {
            DiskImageConverter.TryDelete(temp);
            throw;
        }
    }

    public static void CheckDestination(string destination, bool force)
    {
        if (Directory.Exists(destination))
        {
            throw new OrasStagingException(ErrorCode.DestinationExists,
                $"The destination '{destination}' is a folder.", "Give a file name as the destination.");
        }

        if (!force && File.Exists(destination))
        {
            throw new OrasStagingException(ErrorCode.DestinationExists,
                $"The destination '{destination}' already exists.", "Use -Force to overwrite it, or choose another destination.");
        }
    }
}
