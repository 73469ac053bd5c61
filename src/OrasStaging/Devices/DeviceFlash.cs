using OrasStaging.Compression;
using OrasStaging.DiskImages;
using OrasStaging.DiskImages.Qcow2;

namespace OrasStaging.Devices;

/// <summary>
/// The device route shared by Install-DiskImageFromOras and Convert-DiskImage: the checks made before the user is
/// asked (<see cref="Prepare"/>), the exclusive open, the write, the optional read-back (-Verify), and what a
/// failure after the first write means for the disk (it holds an incomplete or unverified image: never boot it).
/// Nothing here creates a file beside the device: no stamp, receipt, lock or partial in /dev.
/// </summary>
internal static class DeviceFlash
{
    /// <summary>True when <paramref name="path"/> is a block device (by its file type, or a physical drive), never by its name.</summary>
    public static bool IsDevice(string path) => TargetKind.Of(path) == TargetType.BlockDevice;

    /// <summary>
    /// Describes the device and runs every refusal that can be told before anything is written or asked: in use
    /// (mounted, LVM, MD, swap, the running root), read-only, no permission to write it, and an image known to be
    /// larger than the device.
    /// </summary>
    public static BlockDevice Prepare(string path, long? knownImageLength)
    {
        var device = BlockDevice.Describe(path);
        DeviceSafety.ThrowIfInUse(device);
        DeviceSafety.ThrowIfNoPermission(device);
        if (knownImageLength is { } length)
        {
            DeviceSafety.ThrowIfTooSmall(device, length);
        }

        return device;
    }

    /// <summary>
    /// Opens the device exclusively (the checks run again there: the state may have changed while the user was
    /// asked), runs <paramref name="write"/>, then with <paramref name="verify"/> re-reads the image and compares its
    /// hash with the decoded stream's. A failure once bytes reached the device says so, and that it must not be booted.
    /// </summary>
    public static async Task<DeviceWriteResult> RunAsync(BlockDevice device, long? knownImageLength, bool verify,
        Func<DeviceWriter, Task<DeviceWriteResult>> write, IOperationSink sink, CancellationToken ct)
    {
        using var writer = DeviceWriter.Open(device, knownImageLength, new DeviceWriterOptions { Sink = sink, ReportWrites = false });
        sink.Verbose($"Opened {device.NodePath} exclusively for writing ({(writer.DirectIo ? "O_DIRECT" : "buffered")}, {Units.Bytes(device.Size)}).");
        DeviceWriteResult result;
        try
        {
            result = await write(writer).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (writer.Touched)
        {
            // Ctrl+C stays a cancellation; the pipeline reports it. The disk is part written all the same.
            sink.Warning($"Stopped while writing {device.NodePath}: it now holds an incomplete image and must not be booted.");
            throw;
        }
        catch (Exception ex) when (ex is OrasStagingException or IOException)
        {
            throw Unbootable(device, ex, writer.Touched);
        }

        sink.Verbose($"Wrote {Units.Bytes(result.Length)} onto {device.NodePath} ({Units.Bytes(writer.ZeroedOut)} of it zeroed with BLKZEROOUT) and flushed it.");
        if (verify)
        {
            DeviceTestSeam.BeforeVerify(device.NodePath, sink);
            sink.Verbose($"Reading {Units.Bytes(result.Length)} back from {device.NodePath} to compare with the decoded image ({result.DecodedDigest}).");
            await writer.VerifyAsync(result.Length, result.DecodedDigest!, ct).ConfigureAwait(false);
            sink.Verbose($"{device.NodePath} holds the image: the read-back matches {result.DecodedDigest}.");
        }

        return result;
    }

    /// <summary>
    /// Convert-DiskImage onto a device, before the prompt: refuses an input that is not decoded natively
    /// (<see cref="ThrowIfNotNative"/>), and returns the length of the image when the file tells it without
    /// decoding (a raw or fixed VHD file's length, a qcow2's virtual size), so a too-small device is refused too.
    /// </summary>
    public static long? InspectInput(string inputPath, string devicePath)
    {
        var (kind, source, tar) = DiskImageConverter.Probe(inputPath);
        ThrowIfNotNative(source, $"'{inputPath}'", devicePath);
        if (kind != CompressionKind.None || tar)
        {
            return null;
        }

        if (source == SourceFormat.Qcow2)
        {
            using var image = Qcow2Image.Open(inputPath);
            return image.VirtualSize;
        }

        long length = new FileInfo(inputPath).Length;
        return source == SourceFormat.Raw && HasFixedVhdFooter(inputPath) ? length - VhdFooter.Length : length;
    }

    /// <summary>
    /// A local image file onto the device, as raw: a plain qcow2 by random access (no spool), anything else the
    /// one-pass stream way (compressed, fixed VHD, a compressed qcow2, a containerDisk tar). VMDK, VHDX, VDI and
    /// dynamic VHD are refused (<see cref="ThrowIfNotNative"/>).
    /// </summary>
    public static Task<DeviceWriteResult> WriteFileAsync(string inputPath, DeviceWriter writer, bool hash, IOperationSink sink, CancellationToken ct)
    {
        var (kind, source, tar) = DiskImageConverter.Probe(inputPath);
        ThrowIfNotNative(source, $"'{inputPath}'", writer.Device.NodePath);

        if (source == SourceFormat.Qcow2 && kind == CompressionKind.None && !tar)
        {
            return Task.Run(() =>
            {
                using var image = Qcow2Image.Open(inputPath);
                sink.Verbose($"The input is a qcow2 ({Units.Bytes(image.VirtualSize)} virtual): decoding it natively onto {writer.Device.NodePath}.");
                return DeviceImageWriter.WriteQcow2(image, writer, hash, ct);
            }, ct);
        }

        return WriteFileStreamAsync(inputPath, writer, hash, sink, ct);
    }

    private static async Task<DeviceWriteResult> WriteFileStreamAsync(string inputPath, DeviceWriter writer, bool hash, IOperationSink sink, CancellationToken ct)
    {
        await using var input = new FileStream(inputPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return await DeviceImageWriter.WriteStreamAsync(input, input.Length, writer, hash, Path.GetTempPath(), sink, ct).ConfigureAwait(false);
    }

    private static bool HasFixedVhdFooter(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length = RandomAccess.GetLength(handle);
        if (length < VhdFooter.Length)
        {
            return false;
        }

        var footer = new byte[VhdFooter.Length];
        RandomAccess.Read(handle, footer, length - VhdFooter.Length);
        return VhdFooter.IsFixedFooter(footer);
    }

    /// <summary>
    /// Only raw goes onto a device, decoded natively from raw, fixed VHD or qcow2. VMDK, VHDX, VDI and dynamic VHD
    /// are refused rather than bridged through qemu-img: qemu-img would write the device itself, outside the
    /// exclusive open, the zero-writing guarantee, the resume and the read-back, and a failure half-way through
    /// would leave the disk part written. Converting to a raw file first costs disk space, never the disk.
    /// </summary>
    internal static void ThrowIfNotNative(SourceFormat source, string what, string devicePath)
    {
        if (source is not (SourceFormat.Raw or SourceFormat.Qcow2))
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                $"{what} is a {Describe(source)} image, which is not written onto a block device. Nothing was written to {devicePath}.",
                NotNativeAction);
        }
    }

    internal const string NotNativeAction =
        "Convert it to a raw file first (Convert-DiskImage <input> -DestinationPath <file>.img, which uses qemu-img for VMDK, VHDX, VDI and dynamic VHD), then write that file onto the device.";

    private static string Describe(SourceFormat source) => source switch
    {
        SourceFormat.VhdDynamic => "dynamic VHD",
        _ => source.ToString().ToUpperInvariant(),
    };

    /// <summary>
    /// A failure after bytes reached the device: the disk holds part of an image (or all of it, unverified).
    /// The code is kept (DigestMismatch stays DigestMismatch); the message says what the disk now holds.
    /// </summary>
    internal static OrasStagingException Unbootable(BlockDevice device, Exception ex, bool touched)
    {
        var code = ex is OrasStagingException o ? o.Code : ErrorCode.DestinationNotWritable;
        if (!touched)
        {
            // Failed while the first buffer was still being gathered: the device was opened, never written.
            if (ex is OrasStagingException { Message: var m } said && m.Contains("Nothing was written", StringComparison.Ordinal))
            {
                return said;
            }

            return new OrasStagingException(code, $"{ex.Message.TrimEnd()} Nothing was written to {device.NodePath}.",
                (ex as OrasStagingException)?.RecommendedAction, ex);
        }

        string what = ex is OrasStagingException { Code: ErrorCode.DigestMismatch }
            ? $"{device.NodePath} now holds unverified data and must not be booted."
            : $"{device.NodePath} now holds a partial image and must not be booted.";
        return new OrasStagingException(code, $"{ex.Message.TrimEnd()} {what}",
            "Write the image again (a new run starts from the beginning) before using the disk.", ex);
    }
}
