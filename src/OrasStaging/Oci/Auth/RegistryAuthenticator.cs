using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Text;

namespace OrasStaging.Oci.Auth;

/// <summary>
/// The reactive Basic/Bearer handshake (distribution spec, "Token Authentication"): send, and on a 401 answer
/// the registry's challenge, then send again. Remembers each registry's challenge and tokens so later requests
/// go authorised from the start, and falls back to anonymous when a stored (docker config) credential is refused,
/// so a stale login never locks the user out of a public repository.
/// </summary>
internal sealed class RegistryAuthenticator
{
    /// <summary>Sends one request (following redirects) with the given Authorization, or none.</summary>
    public delegate Task<HttpResponseMessage> Sender(RegistryRequest request, AuthenticationHeaderValue? auth, CancellationToken ct);

    // Process-wide, like oras-go's shared cache: Resolve-OrasImage piped into Save-OrasBlob reuses the token.
    private static readonly TokenCache SharedTokens = new();
    private static readonly ConcurrentDictionary<string, AuthChallenge> SharedChallenges = new();

    private readonly IOperationSink _sink;
    private readonly CredentialResolver _credentials;
    private readonly TokenService _tokenService;
    private readonly TokenCache _tokens;
    private readonly ConcurrentDictionary<string, AuthChallenge> _challenges;
    private readonly ConcurrentDictionary<string, RegistryCredential?> _credentialCache = new();
    private readonly ConcurrentDictionary<string, bool> _anonymousOnly = new();

    /// <param name="tokens">A private cache (tests); null shares tokens and challenges across the process.</param>
    public RegistryAuthenticator(RegistryOptions options, IOperationSink sink, TokenService tokenService, TokenCache? tokens)
    {
        _sink = sink;
        _credentials = new CredentialResolver(options, sink);
        _tokenService = tokenService;
        _tokens = tokens ?? SharedTokens;
        _challenges = tokens is null ? SharedChallenges : new ConcurrentDictionary<string, AuthChallenge>();
    }

    /// <summary>True when a request to this repository would present credentials.</summary>
    public bool HasCredential(RegistryRequest request) => CredentialFor(request.Registry, request.Repository) is not null;

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

    public async Task<HttpResponseMessage> SendAsync(RegistryRequest request, Sender send, CancellationToken ct)
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
            var response = await send(request, auth, ct).ConfigureAwait(false);
            bool fromRegistry = response.RequestMessage?.RequestUri is { } final && RegistryTransport.SameOrigin(final, request.Uri);
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

            RealmPolicy.EnsureCredentialsAllowed(request.Uri, request.Registry);
            return new AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(Encoding.UTF8.GetBytes(credential.Username + ":" + credential.Password)));
        }

        string? realm = challenge["realm"];
        if (string.IsNullOrEmpty(realm) || !Uri.TryCreate(realm, UriKind.Absolute, out var realmUri))
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                $"{request.Registry} sent a Bearer challenge without a usable realm.");
        }

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
        var (token, expiresIn, issuedAt) = await _tokenService.FetchAsync(realmUri, service, scopes, credential, request, ct).ConfigureAwait(false);
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
}
