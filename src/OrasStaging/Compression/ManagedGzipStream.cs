using System.IO.Compression;

namespace OrasStaging.Compression;

/// <summary>
/// The runtime's GZipStream (zlib-ng, multi-member, CRC32 and ISIZE checked) with the one check it lacks: it ends
/// quietly when its input stops mid-member. Rather than read the runtime's private state, the input is followed by a
/// sentinel: one more gzip member holding a fixed marker. A complete stream decodes the sentinel as its next member,
/// so the output ends with the marker, which is held back and dropped; a cut stream feeds the sentinel's bytes into
/// the unfinished member and fails or ends without the marker. When GZipStream stops before asking for the sentinel
/// at all, it stopped at trailing bytes that do not start a member, which it ignores; that is not a truncation.
/// </summary>
internal sealed class ManagedGzipStream : ForwardReadStream
{
    private static readonly byte[] Marker = [.."ORASSTAGING-EOS!"u8, 0x9D, 0x3A, 0x51, 0xC7, 0xE2, 0x0B, 0x68, 0xF4];
    private static readonly byte[] Sentinel = MakeSentinel();

    private readonly SentinelInput _input;
    private readonly GZipStream _inner;
    private readonly byte[] _held = new byte[Marker.Length];
    private readonly byte[] _scratch = new byte[2 * Marker.Length];
    private int _heldCount, _drained;
    private bool _ended;

    public ManagedGzipStream(Stream compressed)
    {
        _input = new SentinelInput(compressed);
        _inner = new GZipStream(_input, CompressionMode.Decompress, leaveOpen: true);
    }

    public override int Read(Span<byte> buffer)
    {
        while (!buffer.IsEmpty && !_ended)
        {
            int n = _inner.Read(buffer);
            if (n == 0)
            {
                Finish();
                break;
            }

            int k = Marker.Length;
            int emitted;
            if (n >= k)
            {
                // Emit the held bytes and all but the last k new ones; the last k become the held bytes.
                Span<byte> tail = _scratch.AsSpan(0, k);
                buffer.Slice(n - k, k).CopyTo(tail);
                buffer[..(n - k)].CopyTo(buffer[_heldCount..]);
                _held.AsSpan(0, _heldCount).CopyTo(buffer);
                emitted = _heldCount + n - k;
                tail.CopyTo(_held);
                _heldCount = k;
            }
            else
            {
                emitted = Hold(buffer[..n], buffer);
            }

            if (emitted > 0)
            {
                return emitted;
            }
        }

        // After the end, held bytes that are real output (no sentinel was read) are given out, then 0.
        int rest = Math.Min(buffer.Length, _heldCount - _drained);
        _held.AsSpan(_drained, rest).CopyTo(buffer);
        _drained += rest;
        return rest;
    }

    /// <summary>The fast path: GZipStream's CopyTo feeds zlib bufferSize bytes of input at a time, Read only 8 KiB.</summary>
    public override void CopyTo(Stream destination, int bufferSize)
    {
        var holdBack = new HoldBackWriter(this, destination);
        _inner.CopyTo(holdBack, bufferSize);
        Finish();
        destination.Write(_held, _drained, _heldCount - _drained);
        _drained = _heldCount;
    }

    /// <summary>Appends data to the held bytes; what exceeds the marker's length goes to output, oldest first.</summary>
    private int Hold(ReadOnlySpan<byte> data, Span<byte> output)
    {
        int k = Marker.Length;
        Span<byte> combined = _scratch.AsSpan(0, _heldCount + data.Length);
        _held.AsSpan(0, _heldCount).CopyTo(combined);
        data.CopyTo(combined[_heldCount..]);
        int emitted = Math.Max(0, combined.Length - k);
        combined[..emitted].CopyTo(output);
        combined[emitted..].CopyTo(_held);
        _heldCount = combined.Length - emitted;
        return emitted;
    }

    /// <summary>At the decoder's end: if the sentinel was read, the held bytes must be its marker, and are dropped.</summary>
    private void Finish()
    {
        if (_ended)
        {
            return;
        }

        _ended = true;
        if (!_input.SentinelRead)
        {
            return;
        }

        if (_heldCount != Marker.Length || !_held.AsSpan().SequenceEqual(Marker))
        {
            throw new InvalidDataException("The gzip stream ends before its last member is complete (truncated).");
        }

        _heldCount = 0;
    }

    private static byte[] MakeSentinel()
    {
        var buffer = new MemoryStream();
        using (var gzip = new GZipStream(buffer, CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(Marker);
        }

        return buffer.ToArray();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _inner.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>The compressed input, then the sentinel member once the input is exhausted.</summary>
    private sealed class SentinelInput : ForwardReadStream
    {
        private readonly Stream _source;
        private bool _sourceEnded;
        private int _served;

        public SentinelInput(Stream source) => _source = source;

        public bool SentinelRead => _served > 0;

        public override int Read(Span<byte> buffer)
        {
            if (!_sourceEnded)
            {
                int n = _source.Read(buffer);
                if (n > 0 || buffer.IsEmpty)
                {
                    return n;
                }

                _sourceEnded = true;
            }

            int count = Math.Min(buffer.Length, Sentinel.Length - _served);
            Sentinel.AsSpan(_served, count).CopyTo(buffer);
            _served += count;
            return count;
        }
    }

    /// <summary>Passes GZipStream's output to the destination, always keeping the last marker-length bytes back.</summary>
    private sealed class HoldBackWriter : Stream
    {
        private readonly ManagedGzipStream _owner;
        private readonly Stream _destination;

        public HoldBackWriter(ManagedGzipStream owner, Stream destination)
        {
            _owner = owner;
            _destination = destination;
        }

        public override void Write(ReadOnlySpan<byte> data)
        {
            int k = Marker.Length;
            if (data.Length >= k)
            {
                _destination.Write(_owner._held, 0, _owner._heldCount);
                _destination.Write(data[..^k]);
                data[^k..].CopyTo(_owner._held);
                _owner._heldCount = k;
            }
            else
            {
                Span<byte> emitted = stackalloc byte[2 * k];
                int n = _owner.Hold(data, emitted);
                _destination.Write(emitted[..n]);
            }
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush() => _destination.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
