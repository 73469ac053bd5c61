using System.Globalization;

namespace OrasStaging.Oci;

/// <summary>
/// What the workers share about pacing: the retry count and backoff of one range, a pause that holds every worker
/// (Retry-After is the server's word for the whole download, not for one range), and the number of connections.
/// </summary>
internal sealed partial class RangedFetch
{
    /// <summary>Holds every worker until <paramref name="delay"/> from now (never shortens a pause already set).</summary>
    private void PauseEveryone(TimeSpan delay)
    {
        long until = DateTime.UtcNow.Add(delay).Ticks;
        long seen;
        while ((seen = Interlocked.Read(ref _pauseUntil)) < until && Interlocked.CompareExchange(ref _pauseUntil, until, seen) != seen)
        {
        }
    }

    private async Task GiveUpOrWaitAsync(int failures, TimeSpan delay, string cause, long at, CancellationToken ct, Exception? dropped = null)
    {
        var options = _transport.Options;
        if (failures > options.MaximumRetryCount)
        {
            throw new OrasStagingException(GiveUp.CodeFor(dropped),
                $"The download of blob {_image.Digest} from {_image.Registry} kept failing at {Units.Bytes(at)} of {Units.Bytes(_image.Size)}: {cause}.",
                "Run the command again to resume; -MaximumRetryCount and -RetryIntervalSec control retries.");
        }

        _sink.Verbose($"Range at {Units.Bytes(at)}: {cause}; retry {failures} of {options.MaximumRetryCount}" +
            (delay > TimeSpan.Zero ? $" in {delay.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s." : "."));
        if (delay > TimeSpan.Zero)
        {
            await Task.Delay(delay, ct).ConfigureAwait(false);
        }
    }

    private async Task PauseAsync(CancellationToken ct)
    {
        var wait = new DateTime(Interlocked.Read(ref _pauseUntil), DateTimeKind.Utc) - DateTime.UtcNow;
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait, ct).ConfigureAwait(false);
        }
    }

    private int? ReduceConnections()
    {
        while (true)
        {
            int now = Volatile.Read(ref _allowed);
            if (now <= 1)
            {
                return null;
            }

            if (Interlocked.CompareExchange(ref _allowed, now - 1, now) == now)
            {
                return now - 1;
            }
        }
    }
}
