using System.Collections.Concurrent;
using System.Net;

namespace OrasStaging.Oci.Mirrors;

/// <summary>One registry source and the transport that talks to it.</summary>
internal sealed record SourceEndpoint(PullSource Source, RegistryTransport Transport)
{
    public ImageReference Reference => Source.Reference;

    public bool IsOrigin => Source.Kind == SourceKind.Origin;

    /// <summary>"mirror host/repo" or "origin host/repo": for Verbose lines, error lists and the receipt.</summary>
    public string Label => Describe(Source);

    public static string Describe(PullSource source) => source.Kind switch
    {
        SourceKind.Cache => $"cache {source.CacheServer?.Authority}",
        SourceKind.Mirror => $"mirror {source.Reference.Registry}/{source.Reference.Repository}",
        _ => $"origin {source.Reference.Registry}/{source.Reference.Repository}",
    };
}

/// <summary>
/// The transport for each source of a plan. The origin keeps the caller's options (so <c>-Credential</c> goes to it
/// only); a mirror gets its own: no <c>-Credential</c> (its credentials are looked up for its own host in docker's
/// config), few retries and a short stall limit, so a mirror that is down or hangs costs seconds, not minutes,
/// before the next source is tried. An <c>insecure</c> source accepts any certificate and, when it does not speak
/// TLS at all, plain http (what the container engines do for <c>insecure = true</c>).
/// </summary>
internal sealed class SourceTransports
{
    /// <summary>Retries of one request to a mirror before it is skipped.</summary>
    public const int MirrorRetries = 1;

    /// <summary>No headers or no bytes from a mirror for this long skips it.</summary>
    public static readonly TimeSpan MirrorStallTimeout = TimeSpan.FromSeconds(10);

    private static readonly TimeSpan TlsProbeTimeout = TimeSpan.FromSeconds(5);

    // host -> speaks plain http only; shared, like the HTTP clients, so a lab's many pulls probe once.
    private static readonly ConcurrentDictionary<string, Task<bool>> PlainHttpHosts = new(StringComparer.OrdinalIgnoreCase);

    private readonly RegistryOptions _options;
    private readonly IOperationSink _sink;
    private readonly HttpMessageHandler? _handler;
    private readonly RegistryTransport _origin;
    private readonly ConcurrentDictionary<string, Task<RegistryTransport>> _transports = new(StringComparer.Ordinal);

    public SourceTransports(RegistryOptions options, IOperationSink sink, HttpMessageHandler? handler, RegistryTransport origin)
    {
        _options = options;
        _sink = sink;
        _handler = handler;
        _origin = origin;
    }

    public async Task<SourceEndpoint> EndpointAsync(PullSource source, CancellationToken ct) =>
        new(source, await TransportAsync(source, ct).ConfigureAwait(false));

    private Task<RegistryTransport> TransportAsync(PullSource source, CancellationToken ct)
    {
        if (source.Kind == SourceKind.Origin && !source.Insecure)
        {
            return Task.FromResult(_origin);
        }

        string key = $"{source.Kind}|{source.Reference.Registry}|{source.Insecure}|{source.DefinedBy == "-Mirror"}";
        return _transports.GetOrAdd(key, _ => CreateAsync(source, ct));
    }

    private async Task<RegistryTransport> CreateAsync(PullSource source, CancellationToken ct)
    {
        bool mirror = source.Kind != SourceKind.Origin;
        var options = new RegistryOptions
        {
            PlainHttp = _options.PlainHttp,
            SkipCertificateCheck = _options.SkipCertificateCheck || source.Insecure,
            Credential = mirror ? null : _options.Credential,
            Anonymous = _options.Anonymous,
            DockerConfigPath = _options.DockerConfigPath,
            MaximumRetryCount = mirror ? Math.Min(_options.MaximumRetryCount, MirrorRetries) : _options.MaximumRetryCount,
            RetryIntervalSec = mirror ? Math.Min(_options.RetryIntervalSec, 1) : _options.RetryIntervalSec,
            CacheServer = string.Empty,
            ConnectionLimit = 1,
            StallTimeout = mirror && _options.StallTimeout > MirrorStallTimeout ? MirrorStallTimeout : _options.StallTimeout,
            RegistryConfigPath = string.Empty,
        };

        if (source.Insecure && options.PlainHttp is null)
        {
            // -Mirror http://host: plain http, as written; registries.conf insecure: https without checks if the
            // host speaks TLS, else http.
            options.PlainHttp = source.DefinedBy == "-Mirror"
                || await SpeaksPlainHttpOnlyAsync(source.Reference.Registry, options, ct).ConfigureAwait(false);
            _sink.Verbose($"{SourceEndpoint.Describe(source)} is insecure: using {(options.PlainHttp == true ? "plain http" : "https without certificate checks")}.");
        }

        return new RegistryTransport(options, _sink, _handler);
    }

    /// <summary>True when an https request to <paramref name="registry"/> fails below HTTP (no TLS there).</summary>
    private Task<bool> SpeaksPlainHttpOnlyAsync(string registry, RegistryOptions options, CancellationToken ct) =>
        PlainHttpHosts.GetOrAdd(registry, async host =>
        {
            var probe = new RegistryTransport(new RegistryOptions { PlainHttp = false, SkipCertificateCheck = true }, _sink, _handler);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TlsProbeTimeout);
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, probe.RegistryUri(host, "/v2/"));
                using var response = await probe.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
                return false;
            }
            catch (Exception ex) when (ex is HttpRequestException || (ex is OperationCanceledException && !ct.IsCancellationRequested))
            {
                return true;
            }
        });

    /// <summary>
    /// A failure that means "try the next source": the source is down, slow, refuses us, or does not have it.
    /// A digest mismatch is not one: the bytes were checked and found wrong, which the user must hear about.
    /// </summary>
    public static bool IsSkippable(Exception ex, CancellationToken ct) =>
        !ct.IsCancellationRequested
        && (RegistryTransport.IsConnectionFailure(ex, ct)
            || ex is OrasStagingException
            {
                Code: ErrorCode.RegistryUnavailable or ErrorCode.ManifestNotFound or ErrorCode.BlobNotFound
                    or ErrorCode.AuthenticationFailed or ErrorCode.AccessDenied or ErrorCode.RegistryProtocolError,
            });

    /// <summary>The origin's error, with what each skipped source said, so the user sees every place that was tried.</summary>
    public static OrasStagingException WithFailures(OrasStagingException last, IReadOnlyList<string> failures) =>
        failures.Count == 0
            ? last
            : new OrasStagingException(last.Code,
                last.Message + " The other sources failed too: " + string.Join("; ", failures) + ".",
                last.RecommendedAction, last);
}
