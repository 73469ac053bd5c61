using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace OrasStaging.Oci.Auth;

/// <summary>
/// Fetches bearer tokens from a registry's token service (distribution's token spec): the OAuth2 POST for an
/// identity (refresh) token, falling back to the GET that older services take, with the transport's retries.
/// </summary>
internal sealed class TokenService
{
    public const int MaxTokenBytes = 128 * 1024;
    internal const long MaxExpiresInSeconds = 10L * 366 * 24 * 3600;

    private readonly RegistryTransport _transport;
    private readonly RegistryOptions _options;
    private readonly IOperationSink _sink;

    public TokenService(RegistryTransport transport, RegistryOptions options, IOperationSink sink)
    {
        _transport = transport;
        _options = options;
        _sink = sink;
    }

    public async Task<(string Token, long? ExpiresIn, DateTimeOffset? IssuedAt)> FetchAsync(Uri realm, string service,
        List<string> scopes, RegistryCredential? credential, RegistryRequest request, CancellationToken ct)
    {
        RealmPolicy.ValidateRealm(realm, request.Registry, credential is not null);
        if (credential is not null)
        {
            RealmPolicy.EnsureCredentialsAllowed(realm, request.Registry);
            RealmPolicy.EnsureCredentialsAllowed(request.Uri, request.Registry);
        }

        bool oauthPost = credential?.IdentityToken is not null;
        for (int attempt = 0; ; attempt++)
        {
            using var message = BuildTokenRequest(realm, service, scopes, credential, oauthPost);
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            HttpResponseMessage response;
            try
            {
                response = await _transport.SendWithHeaderTimeoutAsync(message, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (RegistryTransport.IsConnectionFailure(ex, ct) && attempt < _options.MaximumRetryCount)
            {
                RegistryTransport.ThrowIfDefinite(ex, realm, $"the token service {realm.Host} for {request.Registry}", started);
                _sink.Verbose($"Token request to {realm.Host}: {RegistryTransport.Describe(ex)}; retrying.");
                await Task.Delay(RetryPolicy.Backoff(attempt, _options.RetryIntervalSec), ct).ConfigureAwait(false);
                continue;
            }
            catch (Exception ex) when (RegistryTransport.IsConnectionFailure(ex, ct))
            {
                RegistryTransport.ThrowIfDefinite(ex, realm, $"the token service {realm.Host} for {request.Registry}", started);
                throw new OrasStagingException(GiveUp.CodeFor(ex),
                    $"Cannot reach the token service {realm.Host} for {request.Registry}: {RegistryTransport.Describe(ex)}", null, ex);
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

                byte[] body;
                try
                {
                    // The body under the same stall rule and retries as any other: headers then silence must not hang.
                    body = await RegistryTransport.ReadCappedAsync(response.Content, MaxTokenBytes, "token response", ct, _options.StallTimeout)
                        .ConfigureAwait(false);
                }
                catch (Exception ex) when (RegistryTransport.IsConnectionFailure(ex, ct) && attempt < _options.MaximumRetryCount)
                {
                    _sink.Verbose($"Token response from {realm.Host}: {RegistryTransport.Describe(ex)}; retrying.");
                    await Task.Delay(RetryPolicy.Backoff(attempt, _options.RetryIntervalSec), ct).ConfigureAwait(false);
                    continue;
                }
                catch (Exception ex) when (RegistryTransport.IsConnectionFailure(ex, ct))
                {
                    throw new OrasStagingException(ErrorCode.RegistryUnavailable,
                        $"The token service {realm.Host} kept failing mid-response for {request.Registry}: {RegistryTransport.Describe(ex)}", null, ex);
                }

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
            post.Headers.UserAgent.ParseAdd(RegistryTransport.UserAgent);
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
        get.Headers.UserAgent.ParseAdd(RegistryTransport.UserAgent);
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
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                    $"The token service {realmHost} answered with a JSON {root.ValueKind}, not an object.");
            }

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

            long? expiresIn = null;
            if (root.TryGetProperty("expires_in", out var e) && e.ValueKind != JsonValueKind.Null)
            {
                // The token spec's expires_in is whole seconds; ten years is far beyond any real token and keeps
                // the expiry arithmetic inside DateTimeOffset.
                if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long v) || v < 0 || v > MaxExpiresInSeconds)
                {
                    throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                        $"The token service {realmHost} sent an expires_in of {Redaction.Untrusted(e.GetRawText())}, which is not a number of seconds up to {MaxExpiresInSeconds}.");
                }

                expiresIn = v;
            }

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
}
