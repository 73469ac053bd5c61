using System.Buffers;
using System.Threading.Channels;

namespace OrasStaging.Staging;

/// <summary>
/// Reads its source on a thread of its own, a few chunks ahead of the consumer, so receiving and hashing the
/// blob overlap with decoding and writing the image instead of taking turns on one thread. Bounded: at most
/// <c>depth</c> chunks are in flight, so memory stays flat however fast the network is.
/// </summary>
internal sealed class ReadAheadStream : ForwardReadStream
{
    private readonly Stream _source;
    private readonly Channel<(byte[] Buffer, int Count)> _chunks;
    private readonly CancellationTokenSource _stop;
    private readonly Task _producer;
    private byte[]? _current;
    private int _offset;
    private int _count;
    private bool _ended;
    private long _position;

    public ReadAheadStream(Stream source, int chunkSize = 1 << 20, int depth = 8, CancellationToken cancellationToken = default)
    {
        _source = source;
        _chunks = Channel.CreateBounded<(byte[], int)>(new BoundedChannelOptions(depth)
        {
            SingleReader = true,
            SingleWriter = true,
        });
        _stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        _producer = Task.Run(() => ProduceAsync(chunkSize, _stop.Token));
    }

    private async Task ProduceAsync(int chunkSize, CancellationToken ct)
    {
        try
        {
            while (true)
            {
                byte[] buffer = ArrayPool<byte>.Shared.Rent(chunkSize);
                int filled = 0;
                try
                {
                    // Fill whole chunks: fewer hand-offs than one per network read.
                    while (filled < chunkSize)
                    {
                        int n = await _source.ReadAsync(buffer.AsMemory(filled, chunkSize - filled), ct).ConfigureAwait(false);
                        if (n == 0)
                        {
                            break;
                        }

                        filled += n;
                    }
                }
                catch
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    throw;
                }

                if (filled == 0)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    break;
                }

                await _chunks.Writer.WriteAsync((buffer, filled), ct).ConfigureAwait(false);
                if (filled < chunkSize)
                {
                    // A short fill means the source returned 0: the end (and, for a verifying source, the check).
                    break;
                }
            }

            _chunks.Writer.TryComplete();
        }
        catch (Exception ex)
        {
            _chunks.Writer.TryComplete(ex);
        }
    }

    public override int Read(Span<byte> buffer)
    {
        if (!EnsureChunk(default).AsTask().GetAwaiter().GetResult())
        {
            return 0;
        }

        return CopyOut(buffer);
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (!await EnsureChunk(cancellationToken).ConfigureAwait(false))
        {
            return 0;
        }

        return CopyOut(buffer.Span);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    private int CopyOut(Span<byte> destination)
    {
        int n = Math.Min(destination.Length, _count - _offset);
        _current.AsSpan(_offset, n).CopyTo(destination);
        _offset += n;
        _position += n;
        return n;
    }

    private async ValueTask<bool> EnsureChunk(CancellationToken cancellationToken)
    {
        if (_current is not null && _offset < _count)
        {
            return true;
        }

        if (_current is not null)
        {
            ArrayPool<byte>.Shared.Return(_current);
            _current = null;
        }

        if (_ended)
        {
            return false;
        }

        try
        {
            if (!await _chunks.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false)
                || !_chunks.Reader.TryRead(out var chunk))
            {
                _ended = true;
                return false;
            }

            (_current, _count) = chunk;
            _offset = 0;
            return true;
        }
        catch (ChannelClosedException ex) when (ex.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerException).Throw();
            throw;
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _stop.Cancel();
            try
            {
                _producer.Wait(TimeSpan.FromSeconds(30));
            }
            catch (AggregateException)
            {
                // The producer's failure was already handed to the reader, or nobody is reading any more.
            }

            while (_chunks.Reader.TryRead(out var chunk))
            {
                ArrayPool<byte>.Shared.Return(chunk.Buffer);
            }

            if (_current is not null)
            {
                ArrayPool<byte>.Shared.Return(_current);
                _current = null;
            }

            _stop.Dispose();
            _source.Dispose();
        }

        base.Dispose(disposing);
    }

    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException();
    }
}
