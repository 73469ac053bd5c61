using System.Security.Cryptography;
using OrasStaging.DiskImages;
using OrasStaging.DiskImages.Qcow2;
using OrasStaging.IO;

namespace OrasStaging.Devices;

/// <summary>
/// The decoded image, in order, onto a device through <see cref="DeviceWriter"/> (which writes every byte, zeros
/// included, and nothing past the image). With <c>hash</c>, the decoded bytes are hashed on the way, so -Verify can
/// compare what the device gives back with what was decoded, not with the compressed blob's digest.
/// The writer belongs to the caller; disposing this target does not close the device.
/// </summary>
internal sealed class DeviceImageTarget : IImageTarget
{
    private readonly DeviceWriter _writer;
    private readonly IncrementalHash? _hash;

    public DeviceImageTarget(DeviceWriter writer, bool hash)
    {
        _writer = writer;
        _hash = hash ? IncrementalHash.CreateHash(HashAlgorithmName.SHA256) : null;
    }

    /// <summary>Bytes of the image handed to the device so far.</summary>
    public long Length { get; private set; }

    /// <summary>sha256:… of the decoded image once <see cref="Finish"/> ran with hashing on; null otherwise.</summary>
    public string? DecodedDigest { get; private set; }

    public void Append(byte[] buffer, int count)
    {
        _hash?.AppendData(buffer, 0, count);
        _writer.Append(buffer.AsSpan(0, count));
        Length += count;
    }

    /// <summary>
    /// The image is exactly the decoded bytes: no rounding up, no growth (a device's size is its own), so the bytes
    /// after the image stay as they were. Flushes the device (one fsync) and returns (image length, bytes written).
    /// </summary>
    public (long VirtualSize, long FileSize) Finish(long decodedLength, long virtualSize)
    {
        var (length, _) = _writer.Finish(Length, Length);
        if (_hash is not null)
        {
            DecodedDigest = "sha256:" + Convert.ToHexString(_hash.GetHashAndReset()).ToLowerInvariant();
        }

        return (length, length);
    }

    public void Dispose() => _hash?.Dispose();
}

/// <summary>
/// A qcow2 that arrives as a stream (from a registry, or compressed) onto a device. A qcow2 is decoded by random
/// access, so it is spooled once, densely, to a temporary file (never beside the device: /dev is no place for
/// files), checked in full, then decoded through <see cref="Qcow2Reader"/> onto the device. Its header is checked
/// and its virtual size compared with the device before anything is spooled, and nothing reaches the device until
/// the whole qcow2 is in and its tables are checked.
/// </summary>
internal sealed class DeviceQcow2Target : IImageTarget
{
    private readonly DeviceImageTarget _device;
    private readonly PartialFile _spool;
    private readonly FileStream _file;
    private readonly long _bound;
    private readonly CancellationToken _ct;
    private long _position;

    public DeviceQcow2Target(ReadOnlySpan<byte> head, DeviceImageTarget device, BlockDevice info, string spoolFolder, IOperationSink sink, CancellationToken ct)
    {
        var header = Qcow2Input.CheckHead(head, null);
        DeviceSafety.ThrowIfTooSmall(info, header.VirtualSize);
        _device = device;
        _ct = ct;
        _spool = PartialFile.HiddenBeside(Path.Combine(spoolFolder, "orasstaging-flash.qcow2"), "spool");
        sink.Verbose($"The image is a qcow2 ({Units.Bytes(header.VirtualSize)} virtual); spooling it once to {_spool.PartialPath} to decode it by random access onto {info.NodePath} (deleted after).");
        _bound = DiskSpace.Available(_spool.PartialPath) ?? long.MaxValue;
        _file = new FileStream(_spool.PartialPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, bufferSize: 0, FileOptions.DeleteOnClose);
    }

    public void Append(byte[] buffer, int count)
    {
        if (count > _bound - _position)
        {
            throw new OrasStagingException(ErrorCode.InsufficientSpace,
                $"The qcow2 image passes the {Units.Bytes(_bound)} free in '{Path.GetDirectoryName(_spool.PartialPath)}', where it is spooled before being decoded onto the device. Nothing was written to the device.",
                "Free space there, or point TMPDIR at a folder with room for the qcow2 file.");
        }

        RandomAccess.Write(_file.SafeFileHandle, buffer.AsSpan(0, count), _position);
        _position += count;
    }

    public (long VirtualSize, long FileSize) Finish(long decodedLength, long virtualSize)
    {
        using var image = Qcow2Image.Open(_file.SafeFileHandle, ownsHandle: false);
        DeviceImageWriter.CopyQcow2(image, _device, _ct);
        return _device.Finish(image.VirtualSize, image.VirtualSize);
    }

    public void Dispose()
    {
        _file.Dispose();
        _spool.Dispose();
    }
}
