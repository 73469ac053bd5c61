using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace OrasStaging.TestKit;

/// <summary>
/// The Docker/distribution token service, as ghcr.io and Docker Hub run it: <c>GET /token?service=…&amp;scope=…</c>,
/// optionally with Basic credentials, answers <c>{"token","access_token","expires_in","issued_at"}</c> holding an
/// RS256 JWT whose header carries the signing certificate (<c>x5c</c>); the registry checks that certificate
/// against its rootcertbundle (our CA).
/// </summary>
/// <remarks>
/// Anonymous requests get pull on every repository except <see cref="PrivateRepository"/>; asking for the
/// private repository without the right credentials, or sending wrong credentials, is a 401. With the right
/// credentials every requested action is granted.
/// </remarks>
public sealed class TokenServer(X509Certificate2 signer, string service, string issuer, string username, string password,
    string privateRepository, int expiresInSeconds, ProxyStats stats, bool strictExpiry = false,
    int? advertisedExpiresInSeconds = null, string? refreshToken = null)
{
    /// <summary>distribution 2.8 accepts a token until 60 s after its exp claim.</summary>
    public const int RegistryLeewaySeconds = 60;

    /// <summary>
    /// exp = iat + expires_in - 60, so that the registry, with its leeway, really refuses the token
    /// expires_in seconds after issue (the claim then lies in the past; clients go by expires_in).
    /// </summary>
    public bool StrictExpiry { get; } = strictExpiry;

    public string Service { get; } = service;
    public string Issuer { get; } = issuer;
    public string PrivateRepository { get; } = privateRepository;
    public int ExpiresInSeconds { get; } = expiresInSeconds;

    /// <summary>
    /// The expires_in told to clients; by default <see cref="ExpiresInSeconds"/>. Larger (with strict expiry) makes
    /// the registry refuse a token its client still believes valid, as when the registry's clock runs ahead.
    /// </summary>
    public int AdvertisedExpiresInSeconds { get; } = advertisedExpiresInSeconds ?? expiresInSeconds;

    /// <summary>
    /// docker's identitytoken: the OAuth2 refresh token that <c>POST /token</c> with
    /// <c>grant_type=refresh_token</c> trades for an access token with every requested action (null: none is
    /// accepted). Docker Hub and distribution's own token server take it this way.
    /// </summary>
    public string? RefreshToken { get; } = refreshToken;

    internal async Task HandleAsync(HttpContext ctx)
    {
        if (HttpMethods.IsPost(ctx.Request.Method))
        {
            await HandlePostAsync(ctx).ConfigureAwait(false);
            return;
        }

        var scopes = ctx.Request.Query["scope"].SelectMany(s => (s ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
        var requestedService = ctx.Request.Query["service"].ToString();

        bool authenticated = false;
        string subject = "";
        var auth = ctx.Request.Headers.Authorization.ToString();
        if (auth.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            string decoded;
            try
            {
                decoded = Encoding.UTF8.GetString(Convert.FromBase64String(auth[6..].Trim()));
            }
            catch (FormatException)
            {
                decoded = "";
            }
            var colon = decoded.IndexOf(':');
            if (colon < 0 || decoded[..colon] != username || decoded[(colon + 1)..] != password)
            {
                stats.Token(scopes, granted: false);
                await DenyAsync(ctx, "invalid username or password").ConfigureAwait(false);
                return;
            }
            authenticated = true;
            subject = username;
        }

        if (requestedService.Length > 0 && requestedService != Service)
        {
            stats.Token(scopes, granted: false);
            ctx.Response.StatusCode = 400;
            await ctx.Response.WriteAsJsonAsync(new { errors = new[] { new { code = "DENIED", message = $"unknown service '{requestedService}'" } } }).ConfigureAwait(false);
            return;
        }

        var access = new JsonArray();
        foreach (var scope in scopes)
        {
            var first = scope.IndexOf(':');
            var last = scope.LastIndexOf(':');
            if (first < 0 || last <= first) continue;
            var type = scope[..first];
            var name = scope[(first + 1)..last];
            var actions = scope[(last + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries);
            string[] granted;
            if (authenticated)
            {
                granted = actions;
            }
            else if (type == "repository" && name == PrivateRepository)
            {
                stats.Token(scopes, granted: false);
                await DenyAsync(ctx, $"authentication required for {name}").ConfigureAwait(false);
                return;
            }
            else
            {
                granted = type == "repository" ? actions.Where(a => a == "pull").ToArray() : [];
            }
            access.Add(new JsonObject
            {
                ["type"] = type,
                ["name"] = name,
                ["actions"] = new JsonArray(granted.Select(a => (JsonNode)JsonValue.Create(a)!).ToArray()),
            });
        }

        stats.Token(scopes, granted: true);
        await GrantAsync(ctx, subject, access).ConfigureAwait(false);
    }

    private async Task GrantAsync(HttpContext ctx, string subject, JsonArray access)
    {
        var now = DateTimeOffset.UtcNow;
        var token = CreateJwt(subject, access, now);
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["token"] = token,
            ["access_token"] = token,
            ["expires_in"] = AdvertisedExpiresInSeconds,
            ["issued_at"] = now.ToString("yyyy-MM-dd'T'HH:mm:ss.fffK", System.Globalization.CultureInfo.InvariantCulture),
        })).ConfigureAwait(false);
    }

    /// <summary>
    /// The OAuth2 form (distribution's token spec, "oauth"): <c>grant_type=refresh_token</c> with
    /// <c>refresh_token</c>, or <c>grant_type=password</c> with <c>username</c>/<c>password</c>; <c>service</c>,
    /// <c>client_id</c> and a space-separated <c>scope</c>. Granted: every requested action.
    /// </summary>
    private async Task HandlePostAsync(HttpContext ctx)
    {
        var form = ctx.Request.HasFormContentType ? await ctx.Request.ReadFormAsync().ConfigureAwait(false) : null;
        var scopes = (form?["scope"].ToString() ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
        string grant = form?["grant_type"].ToString() ?? "";
        stats.TokenPost(grant);
        bool good = grant switch
        {
            "refresh_token" => RefreshToken is not null && form!["refresh_token"].ToString() == RefreshToken,
            "password" => form!["username"].ToString() == username && form["password"].ToString() == password,
            _ => false,
        };
        if (form is null || (grant is not ("refresh_token" or "password")))
        {
            stats.Token(scopes, granted: false);
            ctx.Response.StatusCode = 400;
            await ctx.Response.WriteAsJsonAsync(new { error = "unsupported_grant_type" }).ConfigureAwait(false);
            return;
        }
        if (!good || (form["service"].ToString() is { Length: > 0 } svc && svc != Service))
        {
            stats.Token(scopes, granted: false);
            await DenyAsync(ctx, $"invalid {grant}").ConfigureAwait(false);
            return;
        }

        var access = new JsonArray();
        foreach (var scope in scopes)
        {
            var first = scope.IndexOf(':');
            var last = scope.LastIndexOf(':');
            if (first < 0 || last <= first) continue;
            access.Add(new JsonObject
            {
                ["type"] = scope[..first],
                ["name"] = scope[(first + 1)..last],
                ["actions"] = new JsonArray(scope[(last + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries).Select(a => (JsonNode)JsonValue.Create(a)!).ToArray()),
            });
        }

        stats.Token(scopes, granted: true);
        await GrantAsync(ctx, username, access).ConfigureAwait(false);
    }

    private static async Task DenyAsync(HttpContext ctx, string message)
    {
        ctx.Response.StatusCode = 401;
        ctx.Response.Headers.WWWAuthenticate = "Basic realm=\"testkit-token\"";
        await ctx.Response.WriteAsJsonAsync(new { errors = new[] { new { code = "UNAUTHORIZED", message } } }).ConfigureAwait(false);
    }

    private string CreateJwt(string subject, JsonArray access, DateTimeOffset now)
    {
        var header = new JsonObject
        {
            ["typ"] = "JWT",
            ["alg"] = "RS256",
            ["x5c"] = new JsonArray(JsonValue.Create(Convert.ToBase64String(signer.RawData))),
        };
        var claims = new JsonObject
        {
            ["iss"] = Issuer,
            ["sub"] = subject,
            ["aud"] = Service,
            ["exp"] = now.AddSeconds(ExpiresInSeconds - (StrictExpiry ? RegistryLeewaySeconds : 0)).ToUnixTimeSeconds(),
            // One second of slack so a token is valid the instant it is issued.
            ["nbf"] = now.AddSeconds(-1).ToUnixTimeSeconds(),
            ["iat"] = now.ToUnixTimeSeconds(),
            ["jti"] = Convert.ToHexString(RandomNumberGenerator.GetBytes(12)).ToLowerInvariant(),
            ["access"] = access,
        };
        var plain = new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        var signingInput = Base64Url(Encoding.UTF8.GetBytes(header.ToJsonString(plain))) + "." + Base64Url(Encoding.UTF8.GetBytes(claims.ToJsonString(plain)));
        using var rsa = signer.GetRSAPrivateKey() ?? throw new InvalidOperationException("token signer has no RSA key");
        var signature = rsa.SignData(Encoding.ASCII.GetBytes(signingInput), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        return signingInput + "." + Base64Url(signature);
    }

    internal static string Base64Url(byte[] data) => Convert.ToBase64String(data).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
