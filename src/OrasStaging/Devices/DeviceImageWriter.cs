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
    /// </summary>
    public static async Task<DeviceWriteResult> WriteStreamAsync(Stream input, long? inputLength, DeviceWriter writer, bool hash,
        string spoolFolder, IOperationSink sink, CancellationToken ct)
    {
        var options = new DiskWriteOptions { Format = DiskImageFormat.Raw, InputLength = inputLength, DisplayName = writer.Device.NodePath };
        DeviceImageTarget? device = null;
        DiskWriteResult result;
        try
        {
            result = await DiskImageWriter.WriteToTargetAsync(input, writer.Device.NodePath, options, (head, source) =>
            {
                device = new DeviceImageTarget(writer, hash);
                return source == SourceFormat.Qcow2
                    ? new DeviceQcow2Target(head, device, writer.Device, spoolFolder, sink, ct)
                    : device;
            }, sink, ct).ConfigureAwait(false);
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
