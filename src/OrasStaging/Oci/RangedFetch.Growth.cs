using System.Diagnostics;

namespace OrasStaging.Oci;

/// <summary>
/// When to open another connection. Extra connections pay only when the network is what the reader waits on: on a
/// fast link (a loopback or LAN registry, a local cache) one connection already outruns the decoder, and more of them
/// only cost CPU that the decoder needs (measured on 2 cores, 2 GiB image from a loopback registry: 1.7-2.4 s warm on
/// one connection against 2.2-3.4 s on four). So the fetch starts on one connection and the in-order reader adds one
/// each time it has spent a quarter of its time, and at least <see cref="MinimumWait"/>, waiting for the next range
/// over the last <see cref="Span"/> ranges. While the stages after the reader are still filling their buffers (the
/// first <see cref="SettleBytes"/>) the reader waits on any link, so then only a link slower than
/// <see cref="SlowLink"/> counts: a throttled link grows to the limit within a few ranges, a fast one stays at one
/// unless the reader still waits once the decoder could have pushed back.
/// </summary>
internal sealed class ConnectionGrowth
{
    /// <summary>Ranges per judgement: enough to see a pattern, few enough to ramp up quickly.</summary>
    public const int Span = 2;

    /// <summary>Waits shorter than this are scheduling noise, not a slow link.</summary>
    public static readonly TimeSpan MinimumWait = TimeSpan.FromMilliseconds(20);

    public const double WaitingShare = 0.25;

    /// <summary>Bytes per second below which a link is slow from the first ranges on (1 Gbit/s).</summary>
    public const double SlowLink = 125e6;

    /// <summary>What the later stages can hold before they push back on the reader.</summary>
    public const long SettleBytes = 32L << 20;

    private long _windowBytes;
    private long _deliveredBytes;

    private long _windowStart;
    private bool _started;
    private long _waited;
    private int _delivered;

    /// <summary>The reader waited this long for the next range.</summary>
    public void Waited(long ticks) => _waited += ticks;

    /// <summary>
    /// A range of <paramref name="bytes"/> was handed on at <paramref name="now"/> (Stopwatch ticks); true when the reader
    /// was network-bound over the last <see cref="Span"/> ranges, so one more connection should open.
    /// </summary>
    public bool Delivered(long now, long bytes)
    {
        if (!_started)
        {
            _started = true;
            // The first range after the probe starts the clock; the wait for the probe itself says nothing.
            Reset(now);
            return false;
        }

        _windowBytes += bytes;
        _deliveredBytes += bytes;
        if (++_delivered < Span)
        {
            return false;
        }

        long elapsed = Math.Max(1, now - _windowStart);
        bool waiting = _waited >= MinimumWait.TotalSeconds * Stopwatch.Frequency && _waited >= WaitingShare * elapsed;
        bool slow = _windowBytes < SlowLink * elapsed / Stopwatch.Frequency;
        bool grow = waiting && (slow || _deliveredBytes >= SettleBytes);
        Reset(now);
        return grow;
    }

    private void Reset(long now)
    {
        _windowStart = now;
        _waited = 0;
        _delivered = 0;
        _windowBytes = 0;
    }
}
