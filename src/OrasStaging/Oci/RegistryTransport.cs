using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
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
/// The HTTP layer under every registry call: the scheme rules (https, or http for loopback), retries with
/// backoff on transient failures, and manual redirects that keep Authorization on the registry's origin only.
/// The Basic/Bearer handshake is <see cref="RegistryAuthenticator"/>'s; error bodies are <see cref="RegistryErrors"/>'.
/// </summary>
internal sealed class RegistryTransport
{
    public const int MaxRedirects = 5;
    private static readonly ConcurrentDictionary<bool, HttpClient> SharedClients = new();
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
        if (skip)
        {
            handler.SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, _, _, _) => true };
        }

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

    /// <summary>Explicit choice wins; else loopback uses http, unless certificate checks were turned off (TLS is meant).</summary>
    public bool UsesPlainHttp(string registry) =>
        _options.PlainHttp ?? (!_options.SkipCertificateCheck && IsLoopbackHost(ImageReference.HostOf(registry)));

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
        for (int attempt = 0; ; attempt++)
        {
            HttpResponseMessage? response = null;
            string cause = string.Empty;
            try
            {
                response = request.Anonymous
                    ? await SendFollowingRedirectsAsync(request, null, ct).ConfigureAwait(false)
                    : await _auth.SendAsync(request, SendFollowingRedirectsAsync, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsConnectionFailure(ex, ct))
            {
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
        RegistryErrors.FromResponseAsync(response, request, notFound, _auth.HasCredential(request), ct);

    /// <summary>Reads a small body, refusing more than <paramref name="cap"/> bytes whatever Content-Length says.</summary>
    internal static async Task<byte[]> ReadCappedAsync(HttpContent content, int cap, string what, CancellationToken ct)
    {
        if (content.Headers.ContentLength is long declared && declared > cap)
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                $"The {what} is {Units.Bytes(declared)}, more than the {Units.Bytes(cap)} this client accepts.");
        }

        await using var stream = await content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        using var buffer = new MemoryStream();
        byte[] chunk = new byte[16 * 1024];
        int read;
        while ((read = await stream.ReadAsync(chunk, ct).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > cap)
            {
                throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                    $"The {what} is larger than the {Units.Bytes(cap)} this client accepts.");
            }

            buffer.Write(chunk, 0, read);
        }

        return buffer.ToArray();
    }
}
