using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using OrasStaging.Oci.Auth;

namespace OrasStaging.Oci;

/// <summary>One registry request: where, what for, and how tolerant to be.</summary>
internal sealed record RegistryRequest(HttpMethod Method, Uri Uri, string Registry, string Repository, string What)
{
    public IReadOnlyList<string>? Accept { get; init; }

    public long? RangeFrom { get; init; }

    /// <summary>The last byte wanted, with <see cref="RangeFrom"/>; null: to the end.</summary>
    public long? RangeTo { get; init; }

    /// <summary>False for probes where a 5xx is an answer (distribution 2.8 says 500 for a blob digest on /manifests/).</summary>
    public bool RetryTransient { get; init; } = true;

    /// <summary>No Authorization and no handshake: for a cache server, which must never see the registry's credentials.</summary>
    public bool Anonymous { get; init; }
}

/// <summary>
/// The HTTP layer under every registry call: the scheme rules (https; a loopback registry that does not speak TLS
/// falls back to http, as docker does for its default insecure registries), retries with backoff on transient
/// failures, and manual redirects that keep Authorization on the registry's origin and never leave https.
/// The Basic/Bearer handshake is <see cref="RegistryAuthenticator"/>'s; error bodies are <see cref="RegistryErrors"/>'.
/// </summary>
internal sealed class RegistryTransport
{
    public const int MaxRedirects = 5;
    private static readonly ConcurrentDictionary<bool, HttpClient> SharedClients = new();

    /// <summary>Loopback registries (host:port) found not to speak TLS: asked over http from then on, in this process.</summary>
    private static readonly ConcurrentDictionary<string, bool> PlainLoopback = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// Hosts whose last TLS handshake failed on the certificate, with why and when (Stopwatch ticks); cleared by a
    /// good handshake. The validation callback knows the host but not the port, so only a failure noted since the
    /// attempt began counts: a refused certificate of another loopback registry earlier in the session does not.
    /// </summary>
    private static readonly ConcurrentDictionary<string, (string Why, long At)> CertificateProblems = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The stall rule for small bodies read without a transport (RegistryOptions' default).</summary>
    internal static readonly TimeSpan DefaultStallTimeout = new RegistryOptions().StallTimeout;
    internal static readonly string UserAgent = "OrasStaging/" +
        (typeof(RegistryTransport).Assembly.GetName().Version?.ToString(3) ?? "0");

    private readonly RegistryOptions _options;
    private readonly IOperationSink _sink;
    private readonly RegistryAuthenticator _auth;
    private readonly ConcurrentDictionary<string, bool> _warnings = new();

    public RegistryTransport(RegistryOptions options, IOperationSink sink, HttpMessageHandler? handler = null, TokenCache? tokens = null)
    {
        _options = options;
        _sink = sink;
        _auth = new RegistryAuthenticator(options, sink, new TokenService(this, options, sink), tokens);
        Http = handler is null ? SharedClient(options.SkipCertificateCheck) : new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    }

    public HttpClient Http { get; }

    public RegistryOptions Options => _options;


    /// <summary>One client per settings combination, so connections are pooled across cmdlet calls.</summary>
    internal static HttpClient SharedClient(bool skipCertificateCheck) => SharedClients.GetOrAdd(skipCertificateCheck, skip =>
    {
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseProxy = true,
            Proxy = HttpClient.DefaultProxy,
            ConnectTimeout = TimeSpan.FromSeconds(30),
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            UseCookies = false,
        };
        // The default validation, plus a note of why a certificate was refused: the error then says so, and a
        // loopback registry with a bad certificate is never taken for one that does not speak TLS.
        handler.SslOptions = new SslClientAuthenticationOptions
        {
            RemoteCertificateValidationCallback = skip ? (_, _, _, _) => true : NoteCertificate,
        };

        return new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    });

    public static bool IsLoopbackHost(string host)
    {
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        return IPAddress.TryParse(host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip);
    }

    /// <summary>
    /// Explicit choice wins; else https, except for a loopback registry already found not to speak TLS (the first
    /// request to one goes out over https and falls back, see <see cref="SendAsync"/>).
    /// </summary>
    public bool UsesPlainHttp(string registry) =>
        _options.PlainHttp ?? (IsLoopbackHost(ImageReference.HostOf(registry)) && PlainLoopback.ContainsKey(registry));

    /// <summary>Whether the scheme of <paramref name="registry"/> is still to be found out (loopback, not yet asked).</summary>
    public bool SchemeUndecided(string registry) =>
        _options.PlainHttp is null && IsLoopbackHost(ImageReference.HostOf(registry)) && !PlainLoopback.ContainsKey(registry);

    public Uri RegistryUri(string registry, string pathAndQuery) =>
        new((UsesPlainHttp(registry) ? "http://" : "https://") + registry + pathAndQuery);

    internal static bool SameOrigin(Uri a, Uri b) =>
        a.Scheme.Equals(b.Scheme, StringComparison.OrdinalIgnoreCase)
        && a.Host.Equals(b.Host, StringComparison.OrdinalIgnoreCase)
        && a.Port == b.Port;

    #region Retries

    /// <summary>Sends with auth and redirects, retrying connection failures and 408/429/5xx per the options.</summary>
    public async Task<HttpResponseMessage> SendAsync(RegistryRequest request, CancellationToken ct)
    {
        request = WithLearnedScheme(request);
        for (int attempt = 0; ; attempt++)
        {
            HttpResponseMessage? response = null;
            string cause = string.Empty;
            long started = Stopwatch.GetTimestamp();
            try
            {
                response = request.Anonymous
                    ? await SendFollowingRedirectsAsync(request, null, ct).ConfigureAwait(false)
                    : await _auth.SendAsync(request, SendFollowingRedirectsAsync, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsConnectionFailure(ex, ct))
            {
                ThrowIfDefinite(ex, request.Uri, $"{request.Registry} for {request.What}", started);
                if (PlainFallback(request, ex, started) is { } plain)
                {
                    // Not a retry: the server answered, just not in TLS. Once per registry and process.
                    _sink.Verbose($"{request.Registry} does not speak TLS; using plain http, as for any loopback registry without -PlainHttp.");
                    request = plain;
                    attempt--;
                    continue;
                }

                if (attempt >= _options.MaximumRetryCount)
                {
                    throw new OrasStagingException(GiveUp.CodeFor(ex),
                        $"Cannot reach {request.Registry} for {request.What}: {Describe(ex)}" +
                        (attempt > 0 ? $" (gave up after {attempt} retries)." : "."),
                        "Check the registry address, your network and any proxy; -MaximumRetryCount and -RetryIntervalSec control retries.",
                        ex);
                }

                cause = Describe(ex);
            }

            TimeSpan delay = RetryPolicy.Backoff(attempt, _options.RetryIntervalSec);
            if (response is not null)
            {
                if (!request.RetryTransient || !RetryPolicy.IsTransient(response.StatusCode) || attempt >= _options.MaximumRetryCount)
                {
                    return response;
                }

                cause = $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}";
                if (RetryPolicy.ParseRetryAfter(response.Headers.RetryAfter, DateTimeOffset.UtcNow) is { } after)
                {
                    delay = after > delay ? after : delay;
                    cause += $", Retry-After {after.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture)} s";
                }

                response.Dispose();
            }

            _sink.Verbose($"{request.What}: {cause}; retry {attempt + 1} of {_options.MaximumRetryCount} in " +
                $"{delay.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s.");
            await Task.Delay(delay, ct).ConfigureAwait(false);
        }
    }

    internal static bool IsConnectionFailure(Exception ex, CancellationToken ct) =>
        ex is HttpRequestException or IOException
        || (ex is OperationCanceledException && !ct.IsCancellationRequested);

    /// <summary>
    /// Failures no retry can mend, thrown at once: a host name the resolver definitely does not know (as curl and
    /// docker do; a resolver time-out, SocketError.TryAgain, is still retried) and a refused TLS certificate.
    /// </summary>
    internal static void ThrowIfDefinite(Exception ex, Uri uri, string what, long attemptStarted)
    {
        if (SocketErrorOf(ex) is SocketError.HostNotFound or SocketError.NoData)
        {
            // Behind a proxy (HTTPS_PROXY) the name that failed is the proxy's: the registry's is resolved there.
            Uri? proxy = HttpClient.DefaultProxy.IsBypassed(uri) ? null : HttpClient.DefaultProxy.GetProxy(uri);
            throw new OrasStagingException(ErrorCode.RegistryUnavailable,
                proxy is null
                    ? $"Cannot reach {what}: the host name '{uri.Host}' does not resolve (no such host)."
                    : $"Cannot reach {what}: the proxy's host name '{proxy.Host}' does not resolve (no such host).",
                proxy is null
                    ? "Check the spelling of the registry host name and your DNS settings."
                    : "Check HTTPS_PROXY, HTTP_PROXY and NO_PROXY.", ex);
        }

        if (CertificateProblem(ex, uri, attemptStarted) is { } problem)
        {
            throw new OrasStagingException(ErrorCode.RegistryUnavailable,
                $"Cannot reach {what}: the TLS certificate of {uri.Host} was refused ({problem}).",
                "If the registry uses its own CA, add it to the system's trust store (or point SSL_CERT_FILE at it); "
                + "-SkipCertificateCheck turns the check off, -PlainHttp talks plain http.", ex);
        }
    }

    /// <summary>Why the certificate was refused, when <paramref name="ex"/> is a TLS failure after a refusal noted during this attempt.</summary>
    private static string? CertificateProblem(Exception ex, Uri uri, long attemptStarted) =>
        ex is HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError }
        && CertificateProblems.TryGetValue(uri.Host.Trim('[', ']'), out var problem) && problem.At >= attemptStarted
            ? problem.Why
            : null;

    internal static SocketError? SocketErrorOf(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
        {
            if (ex is SocketException socket)
            {
                return socket.SocketErrorCode;
            }
        }

        return null;
    }

    /// <summary>The request again over http when a loopback registry, asked over https by default, does not speak TLS.</summary>
    private RegistryRequest? PlainFallback(RegistryRequest request, Exception ex, long attemptStarted)
    {
        if (ex is not HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError }
            || request.Uri.Scheme != Uri.UriSchemeHttps
            || !SchemeUndecided(request.Registry)
            || !string.Equals(request.Uri.Authority, request.Registry, StringComparison.OrdinalIgnoreCase)
            || CertificateProblem(ex, request.Uri, attemptStarted) is not null)
        {
            return null;
        }

        PlainLoopback[request.Registry] = true;
        return WithLearnedScheme(request);
    }

    /// <summary>A request built before the registry's scheme was known goes where it is now known to listen.</summary>
    private RegistryRequest WithLearnedScheme(RegistryRequest request) =>
        request.Uri.Scheme == Uri.UriSchemeHttps && _options.PlainHttp is null && PlainLoopback.ContainsKey(request.Registry)
        && string.Equals(request.Uri.Authority, request.Registry, StringComparison.OrdinalIgnoreCase)
            ? request with { Uri = new Uri("http://" + request.Registry + request.Uri.PathAndQuery) }
            : request;

    private static bool NoteCertificate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        string host = ((sender as SslStream)?.TargetHostName ?? string.Empty).Trim('[', ']');
        if (errors == SslPolicyErrors.None)
        {
            CertificateProblems.TryRemove(host, out _);
            return true;
        }

        var why = new List<string>();
        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
        {
            why.Add("no certificate was sent");
        }

        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
        {
            why.Add($"it is not issued for {host}");
        }

        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateChainErrors))
        {
            var statuses = chain?.ChainStatus.Select(s => s.Status.ToString()).Distinct().ToArray() ?? [];
            why.Add("its chain is not trusted" + (statuses.Length > 0 ? $": {string.Join(", ", statuses)}" : string.Empty));
        }

        CertificateProblems[host] = (string.Join("; ", why), Stopwatch.GetTimestamp());
        return false;
    }

    internal static string Describe(Exception ex) => ex switch
    {
        OperationCanceledException => "no answer in time",
        HttpRequestException { InnerException: { } inner } h => Redaction.Text(h.Message + " " + inner.Message),
        _ => Redaction.Text(ex.Message),
    };

    #endregion

    #region Redirects

    internal async Task<HttpResponseMessage> SendWithHeaderTimeoutAsync(HttpRequestMessage message, CancellationToken ct)
    {
        // The timeout covers the wait for headers only; the body is read under the caller's own stall watch.
        var headers = CancellationTokenSource.CreateLinkedTokenSource(ct);
        headers.CancelAfter(_options.StallTimeout);
        try
        {
            return await Http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, headers.Token).ConfigureAwait(false);
        }
        finally
        {
            headers.Dispose();
        }
    }

    /// <summary>Follows up to five redirects; Authorization goes only to the registry's scheme, host and port.</summary>
    private async Task<HttpResponseMessage> SendFollowingRedirectsAsync(RegistryRequest request, AuthenticationHeaderValue? auth, CancellationToken ct)
    {
        Uri uri = request.Uri;
        HttpMethod method = request.Method;
        for (int hop = 0; ; hop++)
        {
            using var message = new HttpRequestMessage(method, uri);
            message.Headers.UserAgent.ParseAdd(UserAgent);
            if (request.Accept is { } accept)
            {
                foreach (string type in accept)
                {
                    message.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(type));
                }
            }

            if (request.RangeFrom is long from)
            {
                message.Headers.Range = new RangeHeaderValue(from, request.RangeTo);
            }

            if (auth is not null && SameOrigin(uri, request.Uri))
            {
                message.Headers.Authorization = auth;
            }

            var response = await SendWithHeaderTimeoutAsync(message, ct).ConfigureAwait(false);
            int status = (int)response.StatusCode;
            if (status is 301 or 302 or 303 or 307 or 308 && response.Headers.Location is { } location)
            {
                response.Dispose();
                if (hop >= MaxRedirects)
                {
                    throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                        $"{request.What}: more than {MaxRedirects} redirects, last to {Redaction.Url(location.IsAbsoluteUri ? location : new Uri(uri, location))}.");
                }

                Uri next = location.IsAbsoluteUri ? location : new Uri(uri, location);
                if (uri.Scheme == Uri.UriSchemeHttps && next.Scheme != Uri.UriSchemeHttps)
                {
                    // A downgrade would expose the rest of the exchange (and a signed CDN URL) to the network.
                    throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                        $"{request.What}: {request.Registry} redirected from https to {next.Scheme} ({Redaction.Url(next)}); refusing to follow a redirect from https to http.",
                        "Report it to the registry's operator; a registry or its CDN must stay on https.");
                }

                if (!next.Host.Equals(uri.Host, StringComparison.OrdinalIgnoreCase) || next.Port != uri.Port)
                {
                    _sink.Verbose($"{request.What}: redirected to {next.Host}" + (next.IsDefaultPort ? "." : $":{next.Port}."));
                }

                if (status == 303 && method != HttpMethod.Head)
                {
                    method = HttpMethod.Get;
                }

                uri = next;
                continue;
            }

            SurfaceWarnings(response, request.Registry);
            return response;
        }
    }

    /// <summary>Distribution-spec Warning headers (299) reach the user once each; nothing acts on them.</summary>
    private void SurfaceWarnings(HttpResponseMessage response, string registry)
    {
        foreach (var warning in response.Headers.Warning)
        {
            if (warning.Code == 299 && _warnings.TryAdd(registry + "|" + warning.Text, true))
            {
                _sink.Warning($"{registry}: {Redaction.Text(warning.Text.Trim('"'))}");
            }
        }
    }

    #endregion

    /// <summary>Turns a final non-success response into the stable error for <paramref name="notFound"/>.</summary>
    public Task<OrasStagingException> ErrorFromAsync(HttpResponseMessage response, RegistryRequest request, ErrorCode notFound, CancellationToken ct) =>
        RegistryErrors.FromResponseAsync(response, request, notFound, _auth.HasCredential(request), _options.StallTimeout, ct);

    /// <summary>
    /// Sends <paramref name="request"/> and, on success, reads its whole small body (a manifest, a sidecar) under
    /// the same stall rule and retries as a blob body: a drop or a stall mid-body is retried like a failed
    /// connection and ends as RegistryUnavailable. On a non-success status the body is null and the response is
    /// the caller's to turn into an error.
    /// </summary>
    internal async Task<SmallResponse> GetSmallAsync(RegistryRequest request, int cap, string what, CancellationToken ct)
    {
        for (int attempt = 0; ; attempt++)
        {
            var response = await SendAsync(request, ct).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                return new SmallResponse(response, null);
            }

            try
            {
                byte[] body = await ReadCappedAsync(response.Content, cap, what, ct, _options.StallTimeout).ConfigureAwait(false);
                return new SmallResponse(response, body);
            }
            catch (Exception ex) when (IsConnectionFailure(ex, ct))
            {
                response.Dispose();
                if (attempt >= _options.MaximumRetryCount)
                {
                    throw new OrasStagingException(ErrorCode.RegistryUnavailable,
                        $"The {what} from {request.Registry} kept failing mid-body: {Describe(ex)}" +
                        (attempt > 0 ? $" (gave up after {attempt} retries)." : "."),
                        "Check your network and any proxy; -MaximumRetryCount and -RetryIntervalSec control retries.", ex);
                }

                TimeSpan delay = RetryPolicy.Backoff(attempt, _options.RetryIntervalSec);
                _sink.Verbose($"{request.What}: the body failed ({Describe(ex)}); retry {attempt + 1} of {_options.MaximumRetryCount} in " +
                    $"{delay.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s.");
                await Task.Delay(delay, ct).ConfigureAwait(false);
            }
            catch
            {
                response.Dispose();
                throw;
            }
        }
    }

    /// <summary>
    /// Reads a small body, refusing more than <paramref name="cap"/> bytes whatever Content-Length says. No byte for
    /// <paramref name="stallTimeout"/> (default: <see cref="DefaultStallTimeout"/>) is an IOException, a dropped
    /// connection to the callers, never a hang.
    /// </summary>
    internal static async Task<byte[]> ReadCappedAsync(HttpContent content, int cap, string what, CancellationToken ct, TimeSpan? stallTimeout = null)
    {
        if (content.Headers.ContentLength is long declared && declared > cap)
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                $"The {what} is {Units.Bytes(declared)}, more than the {Units.Bytes(cap)} this client accepts.");
        }

        TimeSpan stall = stallTimeout ?? DefaultStallTimeout;
        using var watch = CancellationTokenSource.CreateLinkedTokenSource(ct);
        try
        {
            watch.CancelAfter(stall);
            await using var stream = await content.ReadAsStreamAsync(watch.Token).ConfigureAwait(false);
            using var buffer = new MemoryStream();
            byte[] chunk = new byte[16 * 1024];
            while (true)
            {
                watch.CancelAfter(stall);
                int read = await stream.ReadAsync(chunk, watch.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    return buffer.ToArray();
                }

                if (buffer.Length + read > cap)
                {
                    throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                        $"The {what} is larger than the {Units.Bytes(cap)} this client accepts.");
                }

                buffer.Write(chunk, 0, read);
            }
        }
        catch (OperationCanceledException ex) when (!ct.IsCancellationRequested)
        {
            throw new IOException($"the {what} stalled (no bytes for {stall.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture)} s)", ex);
        }
    }
}

/// <summary>A response with its small body read (null when the status was not a success); disposing it disposes the response.</summary>
internal sealed class SmallResponse(HttpResponseMessage response, byte[]? body) : IDisposable
{
    public HttpResponseMessage Response { get; } = response;

    public byte[]? Body { get; } = body;

    public void Dispose() => Response.Dispose();
}
