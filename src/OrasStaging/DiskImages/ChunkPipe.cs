using System.Runtime.ExceptionServices;

namespace OrasStaging.DiskImages;

/// <summary>
/// The bounded hand-off between the decoder thread and the writer thread: a fixed set of 1 MiB buffers circulates
/// (free -> filled -> free), so memory is Buffers x ChunkSize whatever the image size. Both sides are dedicated
/// threads that block on a monitor: unlike a Channel waited on synchronously, a wake-up needs no thread-pool
/// thread to run a continuation, so a fresh process (two pool threads, slow injection) is not starved by it.
/// </summary>
internal sealed class ChunkPipe : IDisposable
{
    private readonly object _gate = new();
    private readonly Stack<byte[]> _free = new();
    private readonly Queue<(byte[] Buffer, int Count)> _filled = new();
    private readonly CancellationTokenRegistration _cancel;
    private readonly CancellationToken _ct;
    private bool _completed;
    private Exception? _failure;

    public ChunkPipe(int buffers, int chunkSize, CancellationToken ct)
    {
        for (int i = 0; i < buffers; i++)
        {
            _free.Push(GC.AllocateUninitializedArray<byte>(chunkSize));
        }

        _ct = ct;
        _cancel = ct.Register(() =>
        {
            lock (_gate)
            {
                Monitor.PulseAll(_gate);
            }
        });
    }

    /// <summary>Producer: a free buffer, waiting while all are filled and not yet written.</summary>
    public byte[] Rent()
    {
        lock (_gate)
        {
            while (_free.Count == 0)
            {
                _ct.ThrowIfCancellationRequested();
                Monitor.Wait(_gate);
            }

            _ct.ThrowIfCancellationRequested();
            return _free.Pop();
        }
    }

    /// <summary>Producer: hands a filled buffer to the writer.</summary>
    public void Publish(byte[] buffer, int count)
    {
        lock (_gate)
        {
            _filled.Enqueue((buffer, count));
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Producer: no more buffers; with <paramref name="failure"/>, the consumer's next take throws it.</summary>
    public void Complete(Exception? failure = null)
    {
        lock (_gate)
        {
            if (!_completed)
            {
                _completed = true;
                _failure = failure;
            }

            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Consumer: the next filled buffer; false at the clean end; the producer's failure is rethrown.</summary>
    public bool Take(out (byte[] Buffer, int Count) chunk)
    {
        lock (_gate)
        {
            while (_filled.Count == 0 && !_completed)
            {
                _ct.ThrowIfCancellationRequested();
                Monitor.Wait(_gate);
            }

            _ct.ThrowIfCancellationRequested();
            if (_filled.Count > 0)
            {
                chunk = _filled.Dequeue();
                return true;
            }

            if (_failure is not null)
            {
                ExceptionDispatchInfo.Capture(_failure).Throw();
            }

            chunk = default;
            return false;
        }
    }

    /// <summary>Consumer: a buffer it has written, back to the producer.</summary>
    public void Return(byte[] buffer)
    {
        lock (_gate)
        {
            _free.Push(buffer);
            Monitor.PulseAll(_gate);
        }
    }

    public void Dispose() => _cancel.Dispose();
}
