using System.Net;
using System.Net.Http.Headers;

namespace OrasStaging.Oci;

/// <summary>When and how long to wait before trying again.</summary>
internal static class RetryPolicy
{
    /// <summary>A server that asks for more than this gets it only up to here; the user can run again later.</summary>
    public static readonly TimeSpan RetryAfterCap = TimeSpan.FromSeconds(60);

    public static readonly TimeSpan BackoffCap = TimeSpan.FromSeconds(30);

    public static bool IsTransient(HttpStatusCode status) =>
        status is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests || (int)status >= 500;

    /// <summary>Exponential backoff with ±25 % jitter; attempt counts from 0.</summary>
    public static TimeSpan Backoff(int attempt, int retryIntervalSec, Random? random = null)
    {
        double baseSeconds = retryIntervalSec > 0 ? retryIntervalSec : 0.02;
        double seconds = baseSeconds * Math.Pow(2, Math.Min(attempt, 16));
        seconds = Math.Min(seconds, BackoffCap.TotalSeconds);
        double jitter = 0.75 + ((random ?? Random.Shared).NextDouble() * 0.5);
        return TimeSpan.FromSeconds(seconds * jitter);
    }

    /// <summary>Retry-After as delta-seconds or an HTTP-date (RFC 9110 §10.2.3), capped; null when absent or past.</summary>
    public static TimeSpan? ParseRetryAfter(RetryConditionHeaderValue? header, DateTimeOffset now)
    {
        if (header is null)
        {
            return null;
        }

        TimeSpan? wait = header.Delta ?? (header.Date is { } date ? date - now : null);
        if (wait is null || wait < TimeSpan.Zero)
        {
            return wait is null ? null : TimeSpan.Zero;
        }

        return wait > RetryAfterCap ? RetryAfterCap : wait;
    }
}
