using OrasStaging.Oci;

namespace OrasStaging.Tests.Oci;

/// <summary>
/// A registry that stops answering ends with OperationTimeout once the retries are used up, whether the stall is
/// in the headers or the body; a connection that closes or is refused stays RegistryUnavailable.
/// </summary>
public sealed class OperationTimeoutTests : IDisposable
{
    private readonly FakeRegistry _reg = new();
    private readonly RecordingSink _sink = new();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(90));
    // The server holds a stalled answer until the test ends, far past the stall timeout: the stall is certain.
    private readonly ManualResetEventSlim _release = new();

    public void Dispose()
    {
        _release.Set();
        _reg.Dispose();
        _timeout.Dispose();
        _release.Dispose();
    }

    private static RegistryOptions Options() => new()
    {
        RetryIntervalSec = 0,
        MaximumRetryCount = 0,
        CacheServer = string.Empty,
        // Short for the test; any pause of the machine longer than this is a stall too, which only gives the
        // same result sooner.
        StallTimeout = TimeSpan.FromSeconds(2),
        DockerConfigPath = "/nonexistent/config.json",
    };

    private OrasImage Blob(byte[] data) => new()
    {
        Registry = _reg.Host,
        Repository = "lab/a",
        Digest = _reg.AddBlob(data),
        Size = data.Length,
        Title = "a.img.gz",
    };

    private static byte[] Data(int size)
    {
        var data = new byte[size];
        new Random(3).NextBytes(data);
        return data;
    }

    private async Task<OrasStagingException> DownloadFailsAsync(OrasImage image)
    {
        return await Assert.ThrowsAsync<OrasStagingException>(async () =>
        {
            await using var stream = await new RegistryClient(Options(), _sink).OpenBlobAsync(image, _timeout.Token);
            await stream.CopyToAsync(Stream.Null, _timeout.Token);
        });
    }

    [Fact]
    public async Task A_body_that_stops_is_OperationTimeout()
    {
        var img = Data(400_000);
        _reg.Intercept = ctx =>
        {
            if (!ctx.Request.Url!.AbsolutePath.Contains("/blobs/"))
            {
                return false;
            }

            ctx.Response.ContentLength64 = img.Length;
            ctx.Response.OutputStream.Write(img, 0, 100_000);
            ctx.Response.OutputStream.Flush();
            _release.Wait(TimeSpan.FromSeconds(60));
            ctx.Response.Abort();
            return true;
        };
        var ex = await DownloadFailsAsync(Blob(img));
        Assert.Equal(ErrorCode.OperationTimeout, ex.Code);
        Assert.Contains("no answer in time", ex.Message);
    }

    [Fact]
    public async Task Headers_that_never_come_are_OperationTimeout()
    {
        _reg.AddImage("lab/a", "v1", ("application/vnd.nosi.disk-image.layer.v1+gzip", Data(100), "a.img.gz"));
        _reg.Intercept = ctx =>
        {
            if (!ctx.Request.Url!.AbsolutePath.Contains("/manifests/"))
            {
                return false;
            }

            _release.Wait(TimeSpan.FromSeconds(60));
            ctx.Response.Abort();
            return true;
        };
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            new RegistryClient(Options(), _sink).ResolveAsync(ImageReference.Parse($"oras://{_reg.Host}/lab/a:v1"), new ResolveOptions(), _timeout.Token));
        Assert.Equal(ErrorCode.OperationTimeout, ex.Code);
    }

    [Fact]
    public async Task A_body_that_closes_early_stays_RegistryUnavailable()
    {
        var img = Data(400_000);
        _reg.Intercept = ctx =>
        {
            if (!ctx.Request.Url!.AbsolutePath.Contains("/blobs/"))
            {
                return false;
            }

            ctx.Response.ContentLength64 = img.Length;
            ctx.Response.OutputStream.Write(img, 0, 100_000);
            ctx.Response.OutputStream.Flush();
            ctx.Response.Abort();
            return true;
        };
        var ex = await DownloadFailsAsync(Blob(img));
        Assert.Equal(ErrorCode.RegistryUnavailable, ex.Code);
    }
}
