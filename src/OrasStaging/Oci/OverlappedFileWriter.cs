using System.Buffers;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;

namespace OrasStaging.Oci;

/// <summary>
/// Writes pooled buffers to a file on its own task, so the download (network + hash) and the disk overlap.
/// Takes ownership of each buffer. Errors of the writer (a full disk) surface on the next call. Writes go at
/// <see cref="Position"/>, which <see cref="Skip"/> moves past bytes the file already holds (ranges stored at their
/// offsets); <c>written</c> hears, after each write, the offset below which everything is on the file.
/// </summary>
internal sealed class OverlappedFileWriter : IAsyncDisposable
{
    private readonly FileStream _file;
    private readonly CancellationToken _ct;
    private readonly Action<long>? _written;
    private Channel<(byte[] Buffer, int Count, long Offset)> _channel = null!;
    private Task _writer = Task.CompletedTask;

    public OverlappedFileWriter(FileStream file, CancellationToken ct, long position = 0, Action<long>? written = null)
    {
        _file = file;
        _ct = ct;
        _written = written;
        Position = position;
        Start();
    }

    /// <summary>Where the next buffer goes (the producer's side: queued, not necessarily written yet).</summary>
    public long Position { get; private set; }

    private void Start()
    {
        _channel = Channel.CreateBounded<(byte[], int, long)>(new BoundedChannelOptions(8) { SingleReader = true, SingleWriter = true });
        var channel = _channel;
        var reader = channel.Reader;
        _writer = Task.Run(async () =>
        {
            try
            {
                while (await reader.WaitToReadAsync(_ct).ConfigureAwait(false))
                {
                    while (reader.TryRead(out var item))
                    {
                        try
                        {
                            await RandomAccess.WriteAsync(_file.SafeFileHandle, item.Buffer.AsMemory(0, item.Count), item.Offset, _ct).ConfigureAwait(false);
                        }
                        finally
                        {
                            ArrayPool<byte>.Shared.Return(item.Buffer);
                        }

                        _written?.Invoke(item.Offset + item.Count);
                    }
                }
            }
            catch (Exception ex)
            {
                // Unblocks a producer waiting on a full channel; it then rethrows this failure.
                channel.Writer.TryComplete(ex);
                throw;
            }
            finally
            {
                while (reader.TryRead(out var left))
                {
                    ArrayPool<byte>.Shared.Return(left.Buffer);
                }
            }
        }, CancellationToken.None);
    }

    public async ValueTask WriteAsync(byte[] buffer, int count, CancellationToken ct)
    {
        if (_writer.IsFaulted || _writer.IsCanceled)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            await DrainAsync().ConfigureAwait(false);
        }

        try
        {
            await _channel.Writer.WriteAsync((buffer, count, Position), ct).ConfigureAwait(false);
            Position += count;
        }
        catch (ChannelClosedException)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            await DrainAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Bytes the file already holds at <see cref="Position"/>: the buffer goes back to the pool unwritten.</summary>
    public ValueTask Skip(byte[] buffer, int count)
    {
        ArrayPool<byte>.Shared.Return(buffer);
        Position += count;
        return ValueTask.CompletedTask;
    }

    /// <summary>Waits until everything queued is on the file; rethrows the writer's failure as it was.</summary>
    public async Task DrainAsync()
    {
        _channel.Writer.TryComplete();
        try
        {
            await _writer.ConfigureAwait(false);
        }
        catch (AggregateException ex) when (ex.InnerException is not null)
        {
            ExceptionDispatchInfo.Throw(ex.InnerException);
        }
    }

    /// <summary>Empties the file and starts writing at 0 again.</summary>
    public async ValueTask RewindAsync()
    {
        await DrainAsync().ConfigureAwait(false);
        _file.SetLength(0);
        Position = 0;
        Start();
    }

    public async ValueTask DisposeAsync()
    {
        _channel.Writer.TryComplete();
        try
        {
            await _writer.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The caller has already seen (or is throwing) the failure that matters.
        }
    }
}
