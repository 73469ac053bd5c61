using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Text;
using System.Text.Json;

namespace OrasStaging.Oci;

/// <summary>One registry request: where, what for, and how tolerant to be.</summary>
internal sealed record RegistryRequest(HttpMethod Method, Uri Uri, string Registry, string Repository, string What)
{
    public IReadOnlyList<string>? Accept { get; init; }

    public long? RangeFrom { get; init; }

    /// <summary>False for probes where a 5xx is an answer (distribution 2.8 says 500 for a blob digest on /manifests/).</summary>
    public bool RetryTransient { get; init; } = true;
}

/// <summary>
/// The HTTP layer under every registry call: reactive Basic/Bearer auth with a token cache, manual redirects
/// that keep Authorization on the registry's origin only, and retries with backoff on transient failures.
/// </summary>
internal sealed class RegistryTransport
{
    public const int MaxRedirects = 5;
    public const int MaxTokenBytes = 128 * 1024;
    private static readonly ConcurrentDictionary<bool, HttpClient> SharedClients = new();
    private static readonly string UserAgent = "OrasStaging/" +
        (typeof(RegistryTransport).Assembly.GetName().Version?.ToString(3) ?? "0");

    private readonly RegistryOptions _options;
    private readonly IOperationSink _sink;
    private readonly CredentialResolver _credentials;
    private readonly TokenCache _tokens;
    // Process-wide, like oras-go's shared cache: Resolve-OrasImage piped into Save-OrasBlob reuses the token.
    private static readonly TokenCache SharedTokens = new();
    private static readonly ConcurrentDictionary<string, AuthChallenge> SharedChallenges = new();
    private readonly ConcurrentDictionary<string, AuthChallenge> _challenges;
    private readonly ConcurrentDictionary<string, RegistryCredential?> _credentialCache = new();
    private readonly ConcurrentDictionary<string, bool> _anonymousOnly = new();
    private readonly ConcurrentDictionary<string, bool> _warnings = new();

    public RegistryTransport(RegistryOptions options, IOperationSink sink, HttpMessageHandler? handler = null, TokenCache? tokens = null)
    {
        _options = options;
        _sink = sink;
        _credentials = new CredentialResolver(options, sink);
        _tokens = tokens ?? SharedTokens;
        _challenges = tokens is null ? SharedChallenges : new ConcurrentDictionary<string, AuthChallenge>();
        Http = handler is null ? SharedClient(options.SkipCertificateCheck) : new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    }

    public HttpClient Http { get; }

    public RegistryOptions Options => _options;

    public IOperationSink Sink => _sink;

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

    private static bool SameOrigin(Uri a, Uri b) =>
        a.Scheme.Equals(b.Scheme, StringComparison.OrdinalIgnoreCase)
        && a.Host.Equals(b.Host, StringComparison.OrdinalIgnoreCase)
        && a.Port == b.Port;

    private RegistryCredential? CredentialFor(string registry, string repository)
    {
        if (_anonymousOnly.ContainsKey(registry + "/" + repository))
        {
            return null;
        }

        return _credentialCache.GetOrAdd(registry, r =>
        {
            var found = _credentials.Find(r);
            if (found is not null)
            {
                _sink.Verbose($"Using credentials for {r} from {found.Source} (user '{found.Username}').");
            }

            return found;
        });
    }

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
                response = await SendAuthenticatedAsync(request, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsConnectionFailure(ex, ct))
            {
                if (attempt >= _options.MaximumRetryCount)
                {
                    throw new OrasStagingException(ErrorCode.RegistryUnavailable,
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

    #region Authentication

    private async Task<HttpResponseMessage> SendAuthenticatedAsync(RegistryRequest request, CancellationToken ct)
    {
        string scope = $"repository:{request.Repository}:pull";
        var credential = CredentialFor(request.Registry, request.Repository);
        AuthenticationHeaderValue? auth = null;
        if (_challenges.TryGetValue(request.Registry, out var known) && (known.IsBearer || credential?.Password is not null))
        {
            try
            {
                auth = await AuthorizeAsync(known, useCache: true).ConfigureAwait(false);
            }
            catch (OrasStagingException ex) when (ex.Code == ErrorCode.AuthenticationFailed)
            {
                // What a registry asked for once is only a guess for this repository; let its own 401 decide.
                auth = null;
            }
        }

        bool fresh = false;
        while (true)
        {
            var response = await SendFollowingRedirectsAsync(request, auth, ct).ConfigureAwait(false);
            bool fromRegistry = response.RequestMessage?.RequestUri is { } final && SameOrigin(final, request.Uri);
            if (!fromRegistry || response.StatusCode is not (HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden))
            {
                return response;
            }

            if (response.StatusCode == HttpStatusCode.Forbidden || fresh)
            {
                _challenges.TryGetValue(request.Registry, out var current);
                if (credential is { Stored: true } && current is { IsBearer: true })
                {
                    // A stale stored credential must not lock the user out of a public repository.
                    GoAnonymous($"HTTP {(int)response.StatusCode}");
                    response.Dispose();
                    auth = await AuthorizeAsync(current, useCache: false).ConfigureAwait(false);
                    fresh = true;
                    continue;
                }

                return response;
            }

            var challenges = AuthChallenge.Parse(response.Headers.WwwAuthenticate.Select(h => h.ToString()));
            var challenge = challenges.FirstOrDefault(c => c.IsBearer) ?? challenges.FirstOrDefault(c => c.IsBasic);
            if (challenge is null)
            {
                return response;
            }

            response.Dispose();
            _challenges[request.Registry] = challenge;
            auth = await AuthorizeAsync(challenge, useCache: false).ConfigureAwait(false);
            fresh = true;
        }

        void GoAnonymous(string why)
        {
            _sink.Verbose($"{request.Registry} refused the stored credentials ({credential!.Source}) with {why}; trying anonymously.");
            _anonymousOnly[request.Registry + "/" + request.Repository] = true;
            credential = null;
        }

        async Task<AuthenticationHeaderValue?> AuthorizeAsync(AuthChallenge challenge, bool useCache)
        {
            try
            {
                return await AuthorizationForAsync(challenge, request, scope, credential, useCache, ct).ConfigureAwait(false);
            }
            catch (OrasStagingException ex) when (ex.Code == ErrorCode.AuthenticationFailed && credential is { Stored: true } && challenge.IsBearer)
            {
                GoAnonymous("the token service");
                return await AuthorizationForAsync(challenge, request, scope, null, useCache, ct).ConfigureAwait(false);
            }
        }
    }

    private async Task<AuthenticationHeaderValue?> AuthorizationForAsync(AuthChallenge challenge, RegistryRequest request,
        string scope, RegistryCredential? credential, bool useCache, CancellationToken ct)
    {
        if (challenge.IsBasic)
        {
            if (credential?.Password is null)
            {
                throw new OrasStagingException(ErrorCode.AuthenticationFailed,
                    $"{request.Registry} asks for a user name and password (Basic) for {request.What}, and none were given.",
                    "Pass -Credential, or log in with 'docker login' so the docker config holds credentials.");
            }

            EnsureCredentialsAllowed(request.Uri, request.Registry);
            return new AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(Encoding.UTF8.GetBytes(credential.Username + ":" + credential.Password)));
        }

        string? realm = challenge["realm"];
        if (string.IsNullOrEmpty(realm) || !Uri.TryCreate(realm, UriKind.Absolute, out var realmUri))
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                $"{request.Registry} sent a Bearer challenge without a usable realm.");
        }

        ValidateRealm(realmUri, request.Registry);
        string service = challenge["service"] ?? string.Empty;
        string challengeScope = challenge["scope"] ?? string.Empty;
        var scopes = new List<string> { scope };
        foreach (string s in challengeScope.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!scopes.Contains(s))
            {
                scopes.Add(s);
            }
        }

        string key = $"{realmUri}|{service}|{string.Join(' ', scopes)}|{CredentialKey(credential)}";
        if (useCache && _tokens.Get(key) is { } cached)
        {
            return new AuthenticationHeaderValue("Bearer", cached);
        }

        _tokens.Remove(key);
        var (token, expiresIn, issuedAt) = await FetchTokenAsync(realmUri, service, scopes, credential, request, ct).ConfigureAwait(false);
        _tokens.Set(key, token, expiresIn, issuedAt);
        _sink.Verbose($"Got a token for {string.Join(' ', scopes)} from {realmUri.Host}" +
            (credential is null ? " (anonymous)" : $" as '{credential.Username}'") +
            (expiresIn is { } e ? $", valid {e} s." : "."));
        return new AuthenticationHeaderValue("Bearer", token);
    }

    /// <summary>Who the token belongs to, without keeping the secret itself in the key.</summary>
    private static string CredentialKey(RegistryCredential? credential)
    {
        if (credential is null)
        {
            return string.Empty;
        }

        byte[] hash = System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(credential.Password ?? credential.IdentityToken ?? string.Empty));
        return credential.Username + "#" + Convert.ToHexString(hash, 0, 8);
    }

    private void EnsureCredentialsAllowed(Uri target, string registry)
    {
        if (target.Scheme != Uri.UriSchemeHttps && !IsLoopbackHost(target.Host))
        {
            throw new OrasStagingException(ErrorCode.AuthenticationFailed,
                $"Refusing to send credentials for {registry} over plain http to a host that is not loopback.",
                "Use https (drop -PlainHttp), or use anonymous access.");
        }
    }

    /// <summary>The realm must be https (or loopback) and on the registry's host or a known pair; no user info.</summary>
    internal static void ValidateRealm(Uri realm, string registry)
    {
        string registryHost = ImageReference.HostOf(registry).ToLowerInvariant();
        string realmHost = realm.Host.Trim('[', ']').ToLowerInvariant();
        bool loopback = IsLoopbackHost(realmHost);
        bool schemeOk = realm.Scheme == Uri.UriSchemeHttps || (realm.Scheme == Uri.UriSchemeHttp && loopback);
        bool hostOk = realmHost == registryHost
            || (loopback && IsLoopbackHost(registryHost))
            || KnownRealmPairs.Contains((registryHost, realmHost));
        if (!schemeOk || !hostOk || !string.IsNullOrEmpty(realm.UserInfo))
        {
            throw new OrasStagingException(ErrorCode.AuthenticationFailed,
                $"{registry} points to the token service {realm.Scheme}://{realm.Host}, which is not https on the registry's own host; refusing to use it.",
                "Check that the registry address is right; a registry should not send you elsewhere for tokens.");
        }
    }

    private static readonly HashSet<(string, string)> KnownRealmPairs = new()
    {
        (ImageReference.DockerHubWireHost, "auth.docker.io"),
    };

    private async Task<(string Token, long? ExpiresIn, DateTimeOffset? IssuedAt)> FetchTokenAsync(Uri realm, string service,
        List<string> scopes, RegistryCredential? credential, RegistryRequest request, CancellationToken ct)
    {
        if (credential is not null)
        {
            EnsureCredentialsAllowed(realm, request.Registry);
            EnsureCredentialsAllowed(request.Uri, request.Registry);
        }

        bool oauthPost = credential?.IdentityToken is not null;
        for (int attempt = 0; ; attempt++)
        {
            using var message = BuildTokenRequest(realm, service, scopes, credential, oauthPost);
            HttpResponseMessage response;
            try
            {
                response = await SendWithHeaderTimeoutAsync(message, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsConnectionFailure(ex, ct) && attempt < _options.MaximumRetryCount)
            {
                _sink.Verbose($"Token request to {realm.Host}: {Describe(ex)}; retrying.");
                await Task.Delay(RetryPolicy.Backoff(attempt, _options.RetryIntervalSec), ct).ConfigureAwait(false);
                continue;
            }
            catch (Exception ex) when (IsConnectionFailure(ex, ct))
            {
                throw new OrasStagingException(ErrorCode.RegistryUnavailable,
                    $"Cannot reach the token service {realm.Host} for {request.Registry}: {Describe(ex)}", null, ex);
            }

            using (response)
            {
                if (oauthPost && response.StatusCode == HttpStatusCode.NotFound)
                {
                    // Token services older than the OAuth2 endpoint answer 404 to the POST; they take the GET.
                    _sink.Verbose($"The token service {realm.Host} does not take the OAuth2 POST (HTTP 404); asking with GET.");
                    oauthPost = false;
                    attempt--;
                    continue;
                }

                if (RetryPolicy.IsTransient(response.StatusCode) && attempt < _options.MaximumRetryCount)
                {
                    var delay = RetryPolicy.ParseRetryAfter(response.Headers.RetryAfter, DateTimeOffset.UtcNow)
                        ?? RetryPolicy.Backoff(attempt, _options.RetryIntervalSec);
                    _sink.Verbose($"Token request to {realm.Host}: HTTP {(int)response.StatusCode}; retrying.");
                    await Task.Delay(delay, ct).ConfigureAwait(false);
                    continue;
                }

                if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
                {
                    throw new OrasStagingException(ErrorCode.AuthenticationFailed,
                        credential is null
                            ? $"{request.Registry} needs credentials for {request.What} (the token service {realm.Host} refused anonymous access with HTTP {(int)response.StatusCode})."
                            : $"{request.Registry} refused the credentials of '{credential.Username}' from {credential.Source} (token service {realm.Host}: HTTP {(int)response.StatusCode}).",
                        credential is null
                            ? "Pass -Credential, or log in with 'docker login'."
                            : "Check the user name and password or token; for a public repository, try without credentials.");
                }

                if (!response.IsSuccessStatusCode)
                {
                    throw new OrasStagingException(
                        RetryPolicy.IsTransient(response.StatusCode) ? ErrorCode.RegistryUnavailable : ErrorCode.RegistryProtocolError,
                        $"The token service {realm.Host} answered HTTP {(int)response.StatusCode} for {request.Registry}.");
                }

                byte[] body = await ReadCappedAsync(response.Content, MaxTokenBytes, "token response", ct).ConfigureAwait(false);
                return ParseTokenResponse(body, realm.Host);
            }
        }
    }

    private static HttpRequestMessage BuildTokenRequest(Uri realm, string service, List<string> scopes, RegistryCredential? credential, bool oauthPost)
    {
        if (oauthPost && credential?.IdentityToken is { } refresh)
        {
            var form = new List<KeyValuePair<string, string>>
            {
                new("grant_type", "refresh_token"),
                new("refresh_token", refresh),
                new("service", service),
                new("client_id", "orasstaging"),
                new("scope", string.Join(' ', scopes)),
            };
            var post = new HttpRequestMessage(HttpMethod.Post, realm) { Content = new FormUrlEncodedContent(form) };
            post.Headers.UserAgent.ParseAdd(UserAgent);
            return post;
        }

        var query = new StringBuilder(realm.Query.Length > 1 ? realm.Query[1..] + "&" : string.Empty);
        if (service.Length > 0)
        {
            query.Append("service=").Append(Uri.EscapeDataString(service));
        }

        foreach (string s in scopes)
        {
            query.Append(query.Length > 0 ? "&" : string.Empty).Append("scope=").Append(Uri.EscapeDataString(s));
        }

        var builder = new UriBuilder(realm) { Query = query.ToString() };
        var get = new HttpRequestMessage(HttpMethod.Get, builder.Uri);
        get.Headers.UserAgent.ParseAdd(UserAgent);
        // On the GET, a refresh token goes where docker's token services take it: as the Basic password.
        if (credential is not null && (credential.Password ?? credential.IdentityToken) is { } password)
        {
            get.Headers.Authorization = new AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(Encoding.UTF8.GetBytes(credential.Username + ":" + password)));
        }

        return get;
    }

    internal static (string Token, long? ExpiresIn, DateTimeOffset? IssuedAt) ParseTokenResponse(byte[] body, string realmHost)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            var root = doc.RootElement;
            string? token = null;
            foreach (string name in new[] { "access_token", "token" })
            {
                if (root.TryGetProperty(name, out var t) && t.ValueKind == JsonValueKind.String && !string.IsNullOrEmpty(t.GetString()))
                {
                    token = t.GetString();
                    break;
                }
            }

            if (token is null)
            {
                throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                    $"The token service {realmHost} answered without a token.");
            }

            long? expiresIn = root.TryGetProperty("expires_in", out var e) && e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out long v) ? v : null;
            DateTimeOffset? issuedAt = root.TryGetProperty("issued_at", out var i) && i.ValueKind == JsonValueKind.String
                && DateTimeOffset.TryParse(i.GetString(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at) ? at : null;
            return (token, expiresIn, issuedAt);
        }
        catch (JsonException)
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                $"The token service {realmHost} answered with something other than JSON.");
        }
    }

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

    #endregion

    #region Redirects

    private async Task<HttpResponseMessage> SendWithHeaderTimeoutAsync(HttpRequestMessage message, CancellationToken ct)
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
                message.Headers.Range = new RangeHeaderValue(from, null);
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

    #region Error mapping

    /// <summary>Turns a final non-success response into the stable error for <paramref name="notFound"/>.</summary>
    public async Task<OrasStagingException> ErrorFromAsync(HttpResponseMessage response, RegistryRequest request, ErrorCode notFound, CancellationToken ct)
    {
        string detail = await RegistryErrorTextAsync(response, ct).ConfigureAwait(false);
        int status = (int)response.StatusCode;
        bool hasCredential = CredentialFor(request.Registry, request.Repository) is not null;
        return response.StatusCode switch
        {
            HttpStatusCode.NotFound => new OrasStagingException(notFound,
                $"{request.What} was not found in {request.Registry}/{request.Repository} (HTTP 404{detail}).",
                notFound == ErrorCode.ManifestNotFound ? "Check the repository name and the tag or digest." : "Check the digest."),
            HttpStatusCode.Unauthorized => new OrasStagingException(ErrorCode.AuthenticationFailed,
                $"{request.Registry} refused {request.What} with HTTP 401{detail}" + (hasCredential ? "; the credentials were not accepted." : "; it needs credentials."),
                hasCredential ? "Check the user name and password or token." : "Pass -Credential, or log in with 'docker login'."),
            HttpStatusCode.Forbidden => new OrasStagingException(ErrorCode.AccessDenied,
                $"{request.Registry} denied access to {request.Repository} for {request.What} (HTTP 403{detail}).",
                "Check that the account may pull this repository."),
            _ when RetryPolicy.IsTransient(response.StatusCode) => new OrasStagingException(ErrorCode.RegistryUnavailable,
                $"{request.Registry} kept failing for {request.What} (HTTP {status}{detail}).",
                "Try again later; -MaximumRetryCount and -RetryIntervalSec control retries."),
            _ => new OrasStagingException(ErrorCode.RegistryProtocolError,
                $"{request.Registry} answered {request.What} with HTTP {status}{detail}."),
        };
    }

    private static async Task<string> RegistryErrorTextAsync(HttpResponseMessage response, CancellationToken ct)
    {
        try
        {
            byte[] body = await ReadCappedAsync(response.Content, 64 * 1024, "error body", ct).ConfigureAwait(false);
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.TryGetProperty("errors", out var errors) && errors.ValueKind == JsonValueKind.Array
                && errors.GetArrayLength() > 0)
            {
                var first = errors[0];
                string code = first.TryGetProperty("code", out var c) ? c.ToString() : string.Empty;
                string message = first.TryGetProperty("message", out var m) ? m.ToString() : string.Empty;
                string text = Redaction.Text($"{code} {message}".Trim());
                return text.Length == 0 ? string.Empty : ": " + (text.Length > 200 ? text[..200] + "…" : text);
            }
        }
        catch (Exception ex) when (ex is JsonException or OrasStagingException or IOException or HttpRequestException)
        {
        }

        return string.Empty;
    }

    #endregion
}
