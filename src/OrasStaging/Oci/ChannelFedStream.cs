using System.Buffers;
using System.Threading.Channels;

namespace OrasStaging.Oci;

/// <summary>One filled buffer from <see cref="ArrayPool{T}.Shared"/>; whoever holds it returns it.</summary>
internal readonly record struct PooledChunk(byte[] Buffer, int Count);

/// <summary>
/// The reading side of a stream fed by a producer task through a bounded channel of pooled chunks: the one
/// reading loop (<see cref="CopyOut"/>) of the verified blob stream and the read-ahead stream. A producer's
/// failure (DigestMismatch, RegistryUnavailable…) reaches the reader instead of a clean end of stream.
/// </summary>
internal abstract class ChannelFedStream : ForwardReadStream
{
    private readonly ChannelReader<PooledChunk> _reader;
    private readonly CancellationTokenSource _stop;
    private readonly TimeSpan _producerGrace;
    private readonly ManualResetEventSlim _written;
    private byte[]? _current;
    private int _count;
    private int _offset;
    private long _position;
    private bool _disposed;

    /// <param name="producerGrace">How long Dispose waits for the cancelled producer, so no request outlives the stream.</param>
    /// <param name="written">
    /// Set by the producer after each chunk it writes (<see cref="WriteAndSignal"/>) and once it completes the
    /// channel. A synchronous Read (the decoder's dedicated thread) waits on it rather than on the channel's
    /// ValueTask, whose wake-up is a continuation that needs a free thread-pool thread, which a fresh process may
    /// not have.
    /// </param>
    protected ChannelFedStream(ChannelReader<PooledChunk> reader, CancellationTokenSource stop, TimeSpan producerGrace,
        ManualResetEventSlim written)
    {
        _reader = reader;
        _stop = stop;
        _producerGrace = producerGrace;
        _written = written;
    }

    /// <summary>Set by the derived class once its producer runs.</summary>
    protected Task? Producer { get; set; }

    public override long Position { get => _position; set => throw new NotSupportedException(); }

    public override int Read(Span<byte> buffer) => NextChunkBlocking(_written) ? CopyOut(buffer) : 0;

    /// <summary>The producer's write: the chunk into the channel, then the reader blocked in a synchronous Read woken.</summary>
    internal static ValueTask WriteAndSignal(ChannelWriter<PooledChunk> writer, PooledChunk chunk, ManualResetEventSlim written, CancellationToken ct)
    {
        ValueTask write = writer.WriteAsync(chunk, ct);
        if (write.IsCompletedSuccessfully)
        {
            written.Set();
            return write;
        }

        return Slow(write, written);

        static async ValueTask Slow(ValueTask write, ManualResetEventSlim written)
        {
            await write.ConfigureAwait(false);
            written.Set();
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.Length == 0)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return 0;
        }

        return await NextChunkAsync(cancellationToken).ConfigureAwait(false) ? CopyOut(buffer.Span) : 0;
    }

    /// <summary>True when a chunk with unread bytes is current; false at the end of the stream.</summary>
    private async ValueTask<bool> NextChunkAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        while (_current is null || _offset == _count)
        {
            Release();
            if (_reader.TryRead(out var chunk))
            {
                (_current, _count, _offset) = (chunk.Buffer, chunk.Count, 0);
                continue;
            }

            try
            {
                if (!await _reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    return false;
                }
            }
            catch (ChannelClosedException ex) when (ex.InnerException is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerException).Throw();
                throw;
            }
        }

        return true;
    }

    /// <summary>As <see cref="NextChunkAsync"/>, blocking on the producer's event: reset before looking, so no write is missed.</summary>
    private bool NextChunkBlocking(ManualResetEventSlim written)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        while (_current is null || _offset == _count)
        {
            Release();
            written.Reset();
            if (_reader.TryRead(out var chunk))
            {
                (_current, _count, _offset) = (chunk.Buffer, chunk.Count, 0);
                continue;
            }

            if (_reader.Completion.IsCompleted)
            {
                // The producer's own exception (DigestMismatch…), as the asynchronous path rethrows it.
                _reader.Completion.GetAwaiter().GetResult();
                return false;
            }

            written.Wait();
        }

        return true;
    }

    private int CopyOut(Span<byte> destination)
    {
        int n = Math.Min(destination.Length, _count - _offset);
        _current.AsSpan(_offset, n).CopyTo(destination);
        _offset += n;
        _position += n;
        return n;
    }

    private void Release()
    {
        if (_current is not null)
        {
            ArrayPool<byte>.Shared.Return(_current);
            _current = null;
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (!_disposed && disposing)
        {
            _disposed = true;
            _stop.Cancel();
            try
            {
                Producer?.Wait(_producerGrace);
            }
            catch (AggregateException)
            {
                // The producer's failure was already handed to the reader, or nobody is reading any more.
            }

            Release();
            while (_reader.TryRead(out var chunk))
            {
                ArrayPool<byte>.Shared.Return(chunk.Buffer);
            }

            _stop.Dispose();
        }

        base.Dispose(disposing);
    }
}
