using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;

namespace OrasStaging.TestKit;

/// <summary>
/// Just enough of a distribution API client for the pusher and the tests: answers Basic and Bearer
/// challenges (fetching tokens from the realm), follows upload Locations relative to the request.
/// </summary>
public sealed class RegistryClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly string? _username, _password;
    private AuthenticationHeaderValue? _auth;

    public RegistryClient(string registry, bool tls, string? caCertPath, string? username, string? password)
    {
        X509Certificate2? ca = null;
        if (caCertPath is not null)
        {
            ca = X509CertificateLoader.LoadCertificateFromFile(caCertPath);
        }
        _http = new HttpClient(TestRegistry.CreateHandler(ca), disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
        BaseUri = new Uri($"{(tls ? "https" : "http")}://{registry}");
        _username = username;
        _password = password;
    }

    public Uri BaseUri { get; }

    /// <summary>Token requests made so far (each challenge answered costs one).</summary>
    public int TokenFetches { get; private set; }

    /// <summary>Sends a request made by <paramref name="make"/>; on 401, authenticates for <paramref name="scope"/> and sends a fresh one.</summary>
    public async Task<HttpResponseMessage> SendAsync(Func<HttpRequestMessage> make, string scope, CancellationToken cancellationToken)
    {
        var request = make();
        if (_auth is not null) request.Headers.Authorization = _auth;
        var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode != HttpStatusCode.Unauthorized) return response;

        var challenge = response.Headers.WwwAuthenticate.FirstOrDefault();
        response.Dispose();
        if (challenge is null) throw new HttpRequestException("401 without a WWW-Authenticate challenge");
        _auth = await AuthenticateAsync(challenge, scope, cancellationToken).ConfigureAwait(false);
        request = make();
        request.Headers.Authorization = _auth;
        return await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
    }

    private async Task<AuthenticationHeaderValue> AuthenticateAsync(AuthenticationHeaderValue challenge, string scope, CancellationToken cancellationToken)
    {
        if (challenge.Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase))
        {
            if (_username is null) throw new HttpRequestException("the registry wants Basic credentials; none given");
            return BasicHeader(_username, _password ?? "");
        }
        if (!challenge.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase))
        {
            throw new HttpRequestException($"unsupported challenge scheme {challenge.Scheme}");
        }
        var parameters = ParseChallenge(challenge.Parameter ?? "");
        if (!parameters.TryGetValue("realm", out var realm)) throw new HttpRequestException("Bearer challenge without realm");
        var query = new List<string>();
        if (parameters.TryGetValue("service", out var service)) query.Add("service=" + Uri.EscapeDataString(service));
        query.Add("scope=" + Uri.EscapeDataString(scope));
        using var tokenRequest = new HttpRequestMessage(HttpMethod.Get, realm + (realm.Contains('?') ? "&" : "?") + string.Join("&", query));
        if (_username is not null) tokenRequest.Headers.Authorization = BasicHeader(_username, _password ?? "");
        TokenFetches++;
        using var tokenResponse = await _http.SendAsync(tokenRequest, cancellationToken).ConfigureAwait(false);
        var body = await tokenResponse.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        if (!tokenResponse.IsSuccessStatusCode) throw new HttpRequestException($"token request failed: {(int)tokenResponse.StatusCode} {body}");
        using var json = JsonDocument.Parse(body);
        var token = json.RootElement.TryGetProperty("token", out var t) ? t.GetString() : json.RootElement.GetProperty("access_token").GetString();
        return new AuthenticationHeaderValue("Bearer", token);
    }

    public static AuthenticationHeaderValue BasicHeader(string user, string password) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));

    /// <summary>realm="…",service="…",scope="…" (quoted values may hold commas).</summary>
    public static Dictionary<string, string> ParseChallenge(string parameter)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        int i = 0;
        while (i < parameter.Length)
        {
            while (i < parameter.Length && (parameter[i] == ',' || parameter[i] == ' ')) i++;
            int eq = parameter.IndexOf('=', i);
            if (eq < 0) break;
            var key = parameter[i..eq].Trim();
            i = eq + 1;
            string value;
            if (i < parameter.Length && parameter[i] == '"')
            {
                var end = parameter.IndexOf('"', i + 1);
                if (end < 0) end = parameter.Length;
                value = parameter[(i + 1)..end];
                i = end + 1;
            }
            else
            {
                var end = parameter.IndexOf(',', i);
                if (end < 0) end = parameter.Length;
                value = parameter[i..end].Trim();
                i = end;
            }
            result[key] = value;
        }
        return result;
    }

    public void Dispose() => _http.Dispose();
}
