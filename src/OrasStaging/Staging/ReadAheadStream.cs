using System.Buffers;
using System.Threading.Channels;
using OrasStaging.Oci;

namespace OrasStaging.Staging;

/// <summary>
/// Reads its source on a thread of its own, a few chunks ahead of the consumer, so receiving and hashing the
/// blob overlap with decoding and writing the image instead of taking turns on one thread. Bounded: at most
/// <c>depth</c> chunks are in flight, so memory stays flat however fast the network is.
/// </summary>
internal sealed class ReadAheadStream : ChannelFedStream
{
    private readonly Stream _source;

    public ReadAheadStream(Stream source, int chunkSize = 1 << 20, int depth = 8, CancellationToken cancellationToken = default)
        : this(source, chunkSize, Channel.CreateBounded<PooledChunk>(new BoundedChannelOptions(depth)
        {
            SingleReader = true,
            SingleWriter = true,
        }), CancellationTokenSource.CreateLinkedTokenSource(cancellationToken), new ManualResetEventSlim(false, spinCount: 0))
    {
    }

    private ReadAheadStream(Stream source, int chunkSize, Channel<PooledChunk> chunks, CancellationTokenSource stop, ManualResetEventSlim written)
        : base(chunks.Reader, stop, TimeSpan.FromSeconds(30), written)
    {
        _source = source;
        Producer = Task.Run(async () =>
        {
            await ProduceAsync(chunks.Writer, chunkSize, written, stop.Token).ConfigureAwait(false);
            written.Set();
        });
    }

    private async Task ProduceAsync(ChannelWriter<PooledChunk> writer, int chunkSize, ManualResetEventSlim written, CancellationToken ct)
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

                await WriteAndSignal(writer, new PooledChunk(buffer, filled), written, ct).ConfigureAwait(false);
                if (filled < chunkSize)
                {
                    // A short fill means the source returned 0: the end (and, for a verifying source, the check).
                    break;
                }
            }

            writer.TryComplete();
        }
        catch (Exception ex)
        {
            writer.TryComplete(ex);
        }
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing)
        {
            _source.Dispose();
        }
    }
}
