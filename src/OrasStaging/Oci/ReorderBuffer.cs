using System.Buffers;

namespace OrasStaging.Oci;

/// <summary>
/// Chunks fetched out of order, handed on in order. A fetcher claims a chunk's index with <see cref="ClaimAsync"/>,
/// which waits while <see cref="Window"/> chunks are claimed and not yet delivered, so memory stays at most
/// Window x chunk size whatever the order of arrival. Buffers are ArrayPool.Shared's; whoever takes one owns it.
/// </summary>
internal sealed class ReorderBuffer : IDisposable
{
    private readonly SemaphoreSlim _slots;
    private readonly SemaphoreSlim _arrived = new(0);
    private readonly Dictionary<long, List<(byte[] Buffer, int Count)>> _done = new();
    private readonly object _gate = new();
    private long _nextClaim;
    private long _nextDeliver;

    public ReorderBuffer(int window, long firstIndex = 0)
    {
        Window = window;
        _slots = new SemaphoreSlim(window);
        _nextClaim = firstIndex;
        _nextDeliver = firstIndex;
    }

    public int Window { get; }

    /// <summary>The index of the next chunk to hand on: every chunk before it has been taken.</summary>
    public long NextDeliver
    {
        get { lock (_gate) { return _nextDeliver; } }
    }

    /// <summary>The next unclaimed index below <paramref name="end"/> once a slot is free, or null when none is left.</summary>
    public async Task<long?> ClaimAsync(long end, CancellationToken ct)
    {
        await _slots.WaitAsync(ct).ConfigureAwait(false);
        lock (_gate)
        {
            if (_nextClaim < end)
            {
                return _nextClaim++;
            }
        }

        _slots.Release();
        return null;
    }

    /// <summary>A whole chunk, its buffers in order; ownership passes to the buffer.</summary>
    public void Complete(long index, List<(byte[] Buffer, int Count)> pieces)
    {
        lock (_gate)
        {
            _done[index] = pieces;
        }

        _arrived.Release();
    }

    /// <summary>Gives back a claimed chunk that will never complete (the fetch is falling back or failing).</summary>
    public void Abandon() => _arrived.Release();

    /// <summary>The next chunk in order if it is complete, else null; its slot is freed for the next claim.</summary>
    public List<(byte[] Buffer, int Count)>? TryTakeNext()
    {
        lock (_gate)
        {
            if (!_done.Remove(_nextDeliver, out var pieces))
            {
                return null;
            }

            _nextDeliver++;
            _slots.Release();
            return pieces;
        }
    }

    /// <summary>Waits until some chunk arrives or is abandoned.</summary>
    public Task WaitAsync(CancellationToken ct) => _arrived.WaitAsync(ct);

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var pieces in _done.Values)
            {
                Return(pieces);
            }

            _done.Clear();
        }

        _slots.Dispose();
        _arrived.Dispose();
    }

    public static void Return(List<(byte[] Buffer, int Count)> pieces)
    {
        foreach (var (buffer, _) in pieces)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        pieces.Clear();
    }
}
