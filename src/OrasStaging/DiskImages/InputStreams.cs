namespace OrasStaging.DiskImages;

/// <summary>
/// The caller's input, counted, with its own failures remembered: a decoder may wrap or swallow them, and the
/// download's DigestMismatch (or any other input failure) must reach the caller unchanged.
/// </summary>
internal sealed class CountingStream : ForwardReadStream
{
    private readonly Stream _inner;
    private long _count;

    public CountingStream(Stream inner) => _inner = inner;

    public long Count => Interlocked.Read(ref _count);

    public Exception? Fault { get; private set; }

    public override int Read(Span<byte> buffer)
    {
        int n;
        try
        {
            n = _inner.Read(buffer);
        }
        catch (Exception ex)
        {
            Fault ??= ex;
            throw;
        }

        Interlocked.Add(ref _count, n);
        return n;
    }

    public override long Position { get => Count; set => throw new NotSupportedException(); }
}

/// <summary>Replays the sniffed bytes, then reads on: sniffing must not need a seekable input.</summary>
internal sealed class PrefixedStream : ForwardReadStream
{
    private readonly byte[] _prefix;
    private readonly Stream _inner;
    private int _used;
    private long _position;

    public PrefixedStream(byte[] prefix, Stream inner)
    {
        _prefix = prefix;
        _inner = inner;
    }

    public override int Read(Span<byte> buffer)
    {
        if (_used < _prefix.Length)
        {
            int n = Math.Min(buffer.Length, _prefix.Length - _used);
            _prefix.AsSpan(_used, n).CopyTo(buffer);
            _used += n;
            _position += n;
            return n;
        }

        int read = _inner.Read(buffer);
        _position += read;
        return read;
    }

    /// <summary>Bytes read so far; SharpCompress's xz reader uses it to align block padding.</summary>
    public override long Position { get => _position; set => throw new NotSupportedException(); }
}
