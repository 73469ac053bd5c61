using System.Collections.Concurrent;

namespace OrasStaging.Oci.Auth;

/// <summary>Bearer tokens per (realm, service, scope, user), kept until shortly before they expire.</summary>
internal sealed class TokenCache
{
    /// <summary>Token spec default when a token response has no expires_in.</summary>
    public static readonly TimeSpan DefaultLifetime = TimeSpan.FromSeconds(60);

    private readonly ConcurrentDictionary<string, (string Token, DateTimeOffset ExpiresAt)> _tokens = new();
    private readonly Func<DateTimeOffset> _clock;

    public TokenCache(Func<DateTimeOffset>? clock = null)
    {
        _clock = clock ?? (() => DateTimeOffset.UtcNow);
    }

    /// <summary>
    /// When to stop using a token: from issued_at (if given and not in the future) or from now, plus
    /// expires_in (default 60 s), minus a safety margin of a tenth of the lifetime, at most 10 s.
    /// </summary>
    public static DateTimeOffset ComputeExpiry(DateTimeOffset now, long? expiresInSeconds, DateTimeOffset? issuedAt)
    {
        TimeSpan lifetime = expiresInSeconds is > 0 ? TimeSpan.FromSeconds(expiresInSeconds.Value) : DefaultLifetime;
        DateTimeOffset start = issuedAt is { } issued && issued <= now ? issued : now;
        TimeSpan margin = TimeSpan.FromTicks(Math.Min(lifetime.Ticks / 10, TimeSpan.FromSeconds(10).Ticks));
        return start + lifetime - margin;
    }

    public string? Get(string key) =>
        _tokens.TryGetValue(key, out var entry) && entry.ExpiresAt > _clock() ? entry.Token : null;

    public void Set(string key, string token, long? expiresInSeconds, DateTimeOffset? issuedAt) =>
        _tokens[key] = (token, ComputeExpiry(_clock(), expiresInSeconds, issuedAt));

    public void Remove(string key) => _tokens.TryRemove(key, out _);
}
