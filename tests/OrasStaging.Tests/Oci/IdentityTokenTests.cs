using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Web;
using OrasStaging.Oci;

namespace OrasStaging.Tests.Oci;

/// <summary>
/// docker's <c>identitytoken</c> (a refresh token from <c>docker login</c>) is traded at the token service with the
/// OAuth2 POST (grant_type=refresh_token); a token service that does not know the POST (404) gets the GET instead.
/// </summary>
public sealed class IdentityTokenTests : IDisposable
{
    private const string Nosi = "application/vnd.nosi.disk-image.layer.v1+gzip";
    private const string Refresh = "refresh-7f3a9c";
    private readonly FakeRegistry _reg = new();
    private readonly RecordingSink _sink = new();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));
    private readonly string _dir = Directory.CreateTempSubdirectory("identity-token-tests-").FullName;
    private readonly ConcurrentQueue<(string Method, string Query, string Body, string? Authorization)> _tokenCalls = new();

    public void Dispose()
    {
        _reg.Dispose();
        _timeout.Dispose();
        Directory.Delete(_dir, true);
    }

    private RegistryOptions OptionsWithIdentityToken()
    {
        string config = Path.Combine(_dir, "config.json");
        File.WriteAllText(config, "{\"auths\": {\"" + _reg.Host + "\": {\"identitytoken\": \"" + Refresh + "\"}}}");
        return new RegistryOptions
        {
            RetryIntervalSec = 0,
            CacheServer = string.Empty,
            StallTimeout = TimeSpan.FromSeconds(10),
            DockerConfigPath = config,
        };
    }

    /// <summary>A private repository behind a token service; <paramref name="postStatus"/> is what a POST gets.</summary>
    private void ServePrivateRepository(int postStatus)
    {
        _reg.AddImage("lab/private", "v1", (Nosi, Encoding.UTF8.GetBytes("disk"), "p.img.gz"));
        _reg.Intercept = ctx =>
        {
            if (ctx.Request.Url!.AbsolutePath == "/token")
            {
                string body;
                using (var reader = new StreamReader(ctx.Request.InputStream, Encoding.UTF8))
                {
                    body = reader.ReadToEnd();
                }

                _tokenCalls.Enqueue((ctx.Request.HttpMethod, ctx.Request.Url.Query, body, ctx.Request.Headers["Authorization"]));
                ctx.Response.ContentType = "application/json";
                if (ctx.Request.HttpMethod == "POST")
                {
                    var form = HttpUtility.ParseQueryString(body);
                    bool good = postStatus == 200 && form["grant_type"] == "refresh_token" && form["refresh_token"] == Refresh;
                    FakeRegistry.WriteBody(ctx, Encoding.UTF8.GetBytes(good
                        ? "{\"access_token\":\"granted-by-post\",\"expires_in\":300}"
                        : "{\"errors\":[]}"), good ? 200 : postStatus == 200 ? 401 : postStatus);
                }
                else
                {
                    // The older GET exchange: Basic with the refresh token as the password.
                    string expected = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("<token>:" + Refresh));
                    bool good = ctx.Request.Headers["Authorization"] == expected;
                    FakeRegistry.WriteBody(ctx, Encoding.UTF8.GetBytes(good ? "{\"token\":\"granted-by-get\"}" : "{}"), good ? 200 : 401);
                }

                return true;
            }

            string? auth = ctx.Request.Headers["Authorization"];
            if (auth is not ("Bearer granted-by-post" or "Bearer granted-by-get"))
            {
                ctx.Response.Headers["WWW-Authenticate"] =
                    $"Bearer realm=\"http://127.0.0.1:{_reg.Port}/token\",service=\"fake\",scope=\"repository:lab/private:pull\"";
                FakeRegistry.WriteStatus(ctx, 401, "UNAUTHORIZED");
                return true;
            }

            return false;
        };
    }

    [Fact]
    public async Task An_identitytoken_is_traded_with_the_OAuth2_refresh_token_POST()
    {
        ServePrivateRepository(postStatus: 200);
        var image = await new RegistryClient(OptionsWithIdentityToken(), _sink)
            .ResolveAsync(ImageReference.Parse($"oras://{_reg.Host}/lab/private:v1"), new ResolveOptions(), _timeout.Token);

        Assert.Equal("p.img.gz", image.Title);
        var calls = _tokenCalls.ToList();
        Assert.NotEmpty(calls);
        Assert.All(calls, c => Assert.Equal("POST", c.Method));
        var form = HttpUtility.ParseQueryString(calls[0].Body);
        Assert.Equal("refresh_token", form["grant_type"]);
        Assert.Equal(Refresh, form["refresh_token"]);
        Assert.Equal("fake", form["service"]);
        Assert.False(string.IsNullOrEmpty(form["client_id"]));
        Assert.Equal("repository:lab/private:pull", form["scope"]);
        // The refresh token travels in the body only: not in the URL, not as a header.
        Assert.Null(calls[0].Authorization);
        Assert.DoesNotContain(Refresh, calls[0].Query);
        Assert.DoesNotContain(Refresh, _sink.All);
        Assert.DoesNotContain("granted-by-post", _sink.All);
    }

    [Fact]
    public async Task A_token_service_that_answers_404_to_the_POST_gets_the_GET()
    {
        ServePrivateRepository(postStatus: 404);
        var image = await new RegistryClient(OptionsWithIdentityToken(), _sink)
            .ResolveAsync(ImageReference.Parse($"oras://{_reg.Host}/lab/private:v1"), new ResolveOptions(), _timeout.Token);

        Assert.Equal("p.img.gz", image.Title);
        var calls = _tokenCalls.ToList();
        Assert.Equal("POST", calls[0].Method);
        Assert.Contains(calls, c => c.Method == "GET");
        var get = calls.First(c => c.Method == "GET");
        Assert.Contains("service=fake", get.Query);
        Assert.DoesNotContain(Refresh, get.Query);
        Assert.DoesNotContain(Refresh, _sink.All);
        Assert.DoesNotContain("granted-by-get", _sink.All);
    }

    [Fact]
    public async Task A_refused_refresh_token_is_AuthenticationFailed_without_falling_back()
    {
        ServePrivateRepository(postStatus: 200);
        string config = Path.Combine(_dir, "config.json");
        var options = OptionsWithIdentityToken();
        File.WriteAllText(config, "{\"auths\": {\"" + _reg.Host + "\": {\"identitytoken\": \"stale\"}}}");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => new RegistryClient(options, _sink)
            .ResolveAsync(ImageReference.Parse($"oras://{_reg.Host}/lab/private:v1"), new ResolveOptions(), _timeout.Token));

        Assert.Equal(ErrorCode.AuthenticationFailed, ex.Code);
        Assert.Contains(_tokenCalls, c => c.Method == "POST");
        // A refused POST is not a 404: the refresh token is never retried on the GET (an anonymous try may follow).
        Assert.DoesNotContain(_tokenCalls, c => c.Method == "GET" && c.Authorization is not null);
        Assert.DoesNotContain("stale", ex.Message);
    }
}
