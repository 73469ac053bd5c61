namespace OrasStaging;

/// <summary>
/// The shape of every stream the flow passes data through (verifying, counting, teeing, reading ahead,
/// decoding): read once, front to back, never written or seeked. Derived classes implement
/// <see cref="Read(Span{byte})"/> and override only what differs (a known Length, a Position getter).
/// </summary>
internal abstract class ForwardReadStream : Stream
{
    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public abstract override int Read(Span<byte> buffer);

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override void Flush() { }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>
/// Passes its source's bytes through unchanged and shows each chunk to <see cref="Observe"/>; the source's end
/// arrives as an empty chunk. For streams that copy or hash what flows past (the -KeepBlob tee, re-verification).
/// </summary>
internal abstract class PassThroughStream : ForwardReadStream
{
    protected PassThroughStream(Stream source) => Source = source;

    protected Stream Source { get; }

    protected abstract void Observe(ReadOnlySpan<byte> data);

    public override int Read(Span<byte> buffer)
    {
        int n = Source.Read(buffer);
        Observe(buffer[..n]);
        return n;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int n = await Source.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        Observe(buffer.Span[..n]);
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
}
