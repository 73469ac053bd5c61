using OrasStaging.Compression;
using OrasStaging.DiskImages;
using OrasStaging.DiskImages.Qcow2;

namespace OrasStaging.Devices;

/// <summary>What went onto the device: the image's length, its decoded digest (when hashed) and the input bytes read.</summary>
internal sealed record DeviceWriteResult(long Length, string? DecodedDigest, long InputBytes);

/// <summary>
/// Decoded images onto an open <see cref="DeviceWriter"/>, always as raw: a raw (or fixed VHD) stream in one pass,
/// a qcow2 through the native reader. The decoding itself is DiskImages' (one place for detection, decoders and
/// the VHD footer rule); only the target differs.
/// </summary>
internal static class DeviceImageWriter
{
    /// <summary>
    /// Reads <paramref name="input"/> (compressed or not) to the end of the image and writes it onto the device.
    /// A qcow2 in the stream is spooled to <paramref name="spoolFolder"/> first (see <see cref="DeviceQcow2Target"/>).
    /// <paramref name="declaredDecodedBytes"/> (the artifact's declared image size) bounds the decoded stream:
    /// passing it is CorruptInput at once. An uncompressed raw input of known length is its own image size, so a
    /// device too small for it is refused before the first byte, as is an image format that is not written onto a
    /// device (VMDK, VHDX, VDI, dynamic VHD: told by the first decoded bytes).
    /// </summary>
    public static async Task<DeviceWriteResult> WriteStreamAsync(Stream input, long? inputLength, DeviceWriter writer, bool hash,
        string spoolFolder, IOperationSink sink, CancellationToken ct, long? declaredDecodedBytes = null, string? tarMember = null)
    {
        var options = new DiskWriteOptions
        {
            Format = DiskImageFormat.Raw,
            InputLength = inputLength,
            DisplayName = writer.Device.NodePath,
            MaxDecodedBytes = declaredDecodedBytes,
            TarMember = tarMember,
        };

        // The first block of the input as sent: uncompressed and not a tar, its length bounds the image from below.
        var first = new byte[512];
        int got = DecodePump.ReadFull(input, first, ct);
        Array.Resize(ref first, got);
        bool plainRaw = CompressionDetector.Detect(first) == CompressionKind.None && !ImageFormatDetector.IsTar(first);

        DeviceImageTarget? device = null;
        DiskWriteResult result;
        try
        {
            result = await DiskImageWriter.WriteToTargetAsync(new PrefixedStream(first, input), writer.Device.NodePath, options, (head, source) =>
            {
                if (source == SourceFormat.Raw && plainRaw && inputLength is { } length)
                {
                    // At most a fixed VHD's footer is not image.
                    DeviceSafety.ThrowIfTooSmall(writer.Device, length - VhdFooter.Length);
                }

                device = new DeviceImageTarget(writer, hash);
                return source == SourceFormat.Qcow2
                    ? new DeviceQcow2Target(head, device, writer.Device, spoolFolder, sink, ct)
                    : device;
            }, sink, ct).ConfigureAwait(false);
        }
        catch (OrasStagingException ex) when (device is null && ex.Code == ErrorCode.UnsupportedFormat)
        {
            // Told from the first bytes, before a target existed: a format (or a compression) that is not decoded natively.
            throw new OrasStagingException(ex.Code, $"{ex.Message} Nothing was written to {writer.Device.NodePath}.",
                DeviceFlash.NotNativeAction, ex);
        }
        finally
        {
            device?.Dispose();
        }

        return new DeviceWriteResult(result.VirtualSize, device?.DecodedDigest, result.InputBytes);
    }

    /// <summary>A checked, local qcow2 file onto the device by random access: no spool.</summary>
    public static DeviceWriteResult WriteQcow2(Qcow2Image image, DeviceWriter writer, bool hash, CancellationToken ct)
    {
        DeviceSafety.ThrowIfTooSmall(writer.Device, image.VirtualSize);
        using var device = new DeviceImageTarget(writer, hash);
        CopyQcow2(image, device, ct);
        var (length, _) = device.Finish(image.VirtualSize, image.VirtualSize);
        return new DeviceWriteResult(length, device.DecodedDigest, image.FileLength);
    }

    /// <summary>Every guest byte of <paramref name="image"/> in order, zero ranges included (a disk holds old data).</summary>
    internal static void CopyQcow2(Qcow2Image image, IImageTarget target, CancellationToken ct)
    {
        using var reader = new Qcow2Reader(image);
        reader.CopyTo(target, ct);
    }
}
