using System.Security.Cryptography;
using OrasStaging.Oci;

namespace OrasStaging.Devices;

/// <summary>How <see cref="DeviceWriter"/> writes; the defaults are the fast, safe ones.</summary>
public sealed class DeviceWriterOptions
{
    /// <summary>O_DIRECT (Linux) / unbuffered (Windows) where the device accepts it; falls back to buffered on EINVAL.</summary>
    public bool DirectIo { get; init; } = true;

    /// <summary>BLKZEROOUT for zero runs of at least <see cref="ZeroOutMinimum"/> bytes; written as zeros otherwise.</summary>
    public bool ZeroOut { get; init; } = true;

    public long ZeroOutMinimum { get; init; } = 1 << 20;

    /// <summary>Bytes gathered before one write; a multiple of 64 KiB.</summary>
    public int BufferSize { get; init; } = 4 << 20;

    public IOperationSink Sink { get; init; } = NullOperationSink.Instance;

    /// <summary>Progress while writing; off when the caller reports the write itself (the decoder's bar), flush and verify still show.</summary>
    public bool ReportWrites { get; init; } = true;

    /// <summary>Shown in progress ("Writing image to /dev/sdb").</summary>
    public string? DisplayName { get; init; }
}

/// <summary>
/// Writes a raw image onto a block device, in order, every byte of it: zero runs are zeroed on the device
/// (BLKZEROOUT or written zeros, never discard), because a disk, unlike a new file, holds old data. Bytes beyond the
/// image are never touched: a partial block at either end is read, patched and written back. Large aligned writes
/// (O_DIRECT where it works), one fsync at the end. <see cref="Seek"/> lets a resumed download continue at the
/// offset it reached. Shaped like DiskImages.IImageTarget (Append, Finish, Dispose) so a raw target can adopt it.
/// Not thread-safe: one writer thread.
/// </summary>
public sealed class DeviceWriter : IDisposable
{
    private const int ScanUnit = 64 * 1024;

    private readonly DeviceHandle _io;
    private readonly DeviceWriterOptions _options;
    private readonly AlignedBuffer _buffer;
    private readonly int _block;
    private long _bufferStart;   // device offset of _buffer[0], a multiple of _block
    private int _filled;         // bytes of _buffer that hold data for the device
    private bool _headLoaded = true; // false after a seek into a block until that block is read in
    private long? _imageLength;
    private long _writtenEnd;    // highest device offset written so far (end of the image part on the device)
    private long _lastProgress;

    private DeviceWriter(BlockDevice device, DeviceHandle io, DeviceWriterOptions options)
    {
        Device = device;
        _io = io;
        _options = options;
        _block = Math.Max(512, device.LogicalBlockSize);
        int size = Math.Max(ScanUnit, options.BufferSize / ScanUnit * ScanUnit);
        _buffer = new AlignedBuffer(size);
    }

    public BlockDevice Device { get; }

    /// <summary>The device offset the next <see cref="Append"/> writes at.</summary>
    public long Position => _bufferStart + _filled;

    /// <summary>True while writes bypass the page cache.</summary>
    public bool DirectIo => _io.Direct;

    /// <summary>
    /// True once a write or a zero-out was sent to the device: from then on a failure leaves a partial image there.
    /// Bytes only gathered in the buffer (<see cref="Position"/>) have not reached it.
    /// </summary>
    public bool Touched { get; private set; }

    /// <summary>Bytes zeroed through BLKZEROOUT rather than written (diagnostics, tests).</summary>
    public long ZeroedOut { get; private set; }

    /// <summary>
    /// Runs the safety checks (<see cref="DeviceSafety"/>) and opens <paramref name="device"/> exclusively for
    /// writing. <paramref name="imageLength"/>, when known, is checked against the device size up front; either
    /// way no write ever goes past the end of the device.
    /// </summary>
    public static DeviceWriter Open(BlockDevice device, long? imageLength, DeviceWriterOptions? options = null)
    {
        options ??= new DeviceWriterOptions();
        DeviceSafety.ThrowIfInUse(device);
        if (imageLength is { } length)
        {
            DeviceSafety.ThrowIfTooSmall(device, length);
        }

        var io = DeviceHandle.Open(device, write: true, options.DirectIo);
        long reported = io.QuerySize();
        if (reported >= 0 && reported != device.Size)
        {
            io.Dispose();
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"{device.NodePath} changed while being inspected (size {reported} bytes, was {device.Size}). Nothing was written.",
                "Check that the right device is connected, then try again.");
        }

        if (!options.ZeroOut)
        {
            io.DisableZeroOut();
        }

        return new DeviceWriter(device, io, options) { _imageLength = imageLength };
    }

    /// <summary>
    /// Moves the write position. After a dropped connection the flow seeks to the offset its resumed stream starts
    /// at (usually <see cref="Position"/> itself, or an earlier one) and appends from there; rewriting a range with the
    /// same bytes is harmless. Pending bytes are written first.
    /// </summary>
    public void Seek(long offset)
    {
        if (offset < 0 || offset > Device.Size)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument, $"Offset {offset} is outside {Device.NodePath} (0..{Device.Size}).");
        }

        WritePending();
        MoveTo(offset);
    }

    // The block holding an unaligned offset keeps the bytes before it: it is read in at the next append.
    private void MoveTo(long offset)
    {
        _bufferStart = offset / _block * _block;
        _filled = (int)(offset - _bufferStart);
        _headLoaded = _filled == 0;
    }

    /// <summary>The IImageTarget shape: the next <paramref name="count"/> bytes of the image.</summary>
    public void Append(byte[] buffer, int count) => Append(buffer.AsSpan(0, count));

    public void Append(ReadOnlySpan<byte> data)
    {
        if (Position + data.Length > Device.Size)
        {
            throw DeviceSafety.Overrun(Device);
        }

        if (!_headLoaded && data.Length > 0)
        {
            _io.ReadAt(_buffer.Array, _buffer.Offset, _block, _bufferStart);
            _headLoaded = true;
        }

        while (data.Length > 0)
        {
            int n = Math.Min(data.Length, _buffer.Length - _filled);
            data[..n].CopyTo(_buffer.Array.AsSpan(_buffer.Offset + _filled, n));
            _filled += n;
            data = data[n..];
            if (_filled == _buffer.Length)
            {
                WritePending();
            }
        }
    }

    /// <summary>
    /// Writes what is pending and flushes the device (one fsync), reporting progress of the flush. Buffered writes
    /// are waited for range by range first, so a slow stick shows the flush moving instead of a long silence.
    /// </summary>
    public void Flush()
    {
        WritePending();
        string what = _options.DisplayName ?? Device.NodePath;
        const long step = 64L << 20;
        for (long at = 0; !_io.Direct && at < _writtenEnd; at += step)
        {
            _options.Sink.Progress(new ProgressInfo($"Flushing to {what}", "Write", at, _writtenEnd));
            _io.WaitWriteback(at, Math.Min(step, _writtenEnd - at));
        }

        _options.Sink.Progress(new ProgressInfo($"Flushing to {what}", "Write", _writtenEnd, _writtenEnd));
        _io.Sync();
    }

    /// <summary>
    /// The IImageTarget shape. Zero-fills up to <paramref name="virtualSize"/> when the decoded stream was shorter
    /// (the image is that large; every byte of it is written), flushes, and returns (virtual size, bytes on the device).
    /// </summary>
    public (long VirtualSize, long FileSize) Finish(long decodedLength, long virtualSize)
    {
        long end = Math.Max(decodedLength, virtualSize);
        if (end > Position)
        {
            if (end > Device.Size)
            {
                throw DeviceSafety.Overrun(Device);
            }

            var zeros = new byte[ScanUnit];
            while (Position < end)
            {
                Append(zeros.AsSpan(0, (int)Math.Min(zeros.Length, end - Position)));
            }
        }

        Flush();
        return (end, end);
    }

    /// <summary>
    /// Re-reads the first <paramref name="length"/> bytes from the device (bypassing the page cache where O_DIRECT
    /// works) and compares their digest with <paramref name="expectedDigest"/> (sha256:… or sha512:…, see
    /// <see cref="Digest"/>). Returns the digest read; a difference is <see cref="ErrorCode.DigestMismatch"/>.
    /// </summary>
    public async Task<string> VerifyAsync(long length, string expectedDigest, CancellationToken ct = default)
    {
        if (length < 0 || length > Device.Size)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument, $"Cannot verify {length} bytes of {Device.NodePath} ({Device.Size} bytes).");
        }

        WritePending();
        using var hash = Digest.CreateHash(expectedDigest);
        using var reader = DeviceHandle.Open(Device, write: false, _options.DirectIo);
        var buffer = new AlignedBuffer(_buffer.Length);
        string what = _options.DisplayName ?? Device.NodePath;
        long at = 0;
        await Task.Run(() =>
        {
            while (at < length)
            {
                ct.ThrowIfCancellationRequested();
                int want = (int)Math.Min(buffer.Length, length - at);
                int whole = (want + _block - 1) / _block * _block; // a direct read is whole blocks; only `want` is hashed
                reader.ReadAt(buffer.Array, buffer.Offset, whole, at);
                hash.AppendData(buffer.Array, buffer.Offset, want);
                at += want;
                _options.Sink.Progress(new ProgressInfo($"Verifying {what}", "Verify", at, length));
            }
        }, ct).ConfigureAwait(false);

        string actual = Digest.Format(expectedDigest, hash.GetHashAndReset());
        if (!Digest.AreEqual(actual, expectedDigest))
        {
            throw new OrasStagingException(ErrorCode.DigestMismatch,
                $"{Device.NodePath} does not hold the image: reading back {Units.Bytes(length)} gave {actual}, expected {expectedDigest}. The device now holds unverified data and must not be booted.",
                "Write the image again; if this repeats, the device is failing.");
        }

        return actual;
    }

    public void Dispose() => _io.Dispose();

    /// <summary>Writes _buffer[0.._filled) at _bufferStart: zero runs zeroed, the rest written, a partial last block patched.</summary>
    private void WritePending()
    {
        if (_filled == 0 || !_headLoaded)
        {
            return; // nothing appended since the last write or seek
        }

        int length = _filled;
        if (length % _block != 0)
        {
            // The block holding the image's last bytes: keep what the device has after them.
            int tail = length / _block * _block;
            var scratch = new AlignedBuffer(_block);
            _io.ReadAt(scratch.Array, scratch.Offset, _block, _bufferStart + tail);
            int keep = length - tail;
            scratch.Array.AsSpan(scratch.Offset + keep, _block - keep).CopyTo(_buffer.Array.AsSpan(_buffer.Offset + length));
            length = tail + _block;
        }

        Touched = true;
        WriteRuns(length);
        long end = _bufferStart + _filled;
        _io.StartWriteback(_bufferStart, length);
        _writtenEnd = Math.Max(_writtenEnd, end);
        // After a patched partial block (written whole), a later append continues inside it.
        MoveTo(end);

        if (_options.ReportWrites && (_writtenEnd - _lastProgress >= 64L << 20 || _lastProgress == 0))
        {
            _lastProgress = _writtenEnd;
            _options.Sink.Progress(new ProgressInfo($"Writing to {_options.DisplayName ?? Device.NodePath}", "Write", _writtenEnd, _imageLength));
        }
    }

    private void WriteRuns(int length)
    {
        var data = _buffer.Array.AsSpan(_buffer.Offset, length);
        int pendingStart = 0;
        int unit = 0;
        while (unit < length)
        {
            int zeroStart = unit;
            while (unit < length && data.Slice(unit, Math.Min(ScanUnit, length - unit)).IndexOfAnyExcept((byte)0) < 0)
            {
                unit += Math.Min(ScanUnit, length - unit);
            }

            int zeroLength = unit - zeroStart;
            if (zeroLength >= _options.ZeroOutMinimum && _io.TryZeroOut(_bufferStart + zeroStart, zeroLength))
            {
                if (zeroStart > pendingStart)
                {
                    _io.WriteAt(_buffer.Array, _buffer.Offset + pendingStart, zeroStart - pendingStart, _bufferStart + pendingStart);
                }

                ZeroedOut += zeroLength;
                pendingStart = unit;
            }

            if (unit == zeroStart)
            {
                unit += Math.Min(ScanUnit, length - unit); // a unit with data: written with its neighbours
            }
        }

        if (length > pendingStart)
        {
            _io.WriteAt(_buffer.Array, _buffer.Offset + pendingStart, length - pendingStart, _bufferStart + pendingStart);
        }
    }
}
