using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace OrasStaging.Tests.Oci;

/// <summary>
/// A tiny loopback HTTP server that speaks just enough of the distribution API to produce the protocol corners a
/// real registry will not (wrong Content-Range, 200 on Range, 416, oversize bodies, cuts). Every test owns one.
/// </summary>
internal sealed class FakeRegistry : IDisposable
{
    private HttpListener _listener = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    public FakeRegistry()
    {
        for (int tries = 0; ; tries++)
        {
            Port = FreePort();
            _listener = new HttpListener();
            _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
            try
            {
                _listener.Start();
                break;
            }
            catch (HttpListenerException) when (tries < 20)
            {
                // The port was taken between probing and binding; a failed Start disposes the listener.
            }
        }

        _loop = Task.Run(LoopAsync);
    }

    public int Port { get; }

    public string Host => $"127.0.0.1:{Port}";

    public ConcurrentQueue<(string Method, string Path, string? Authorization, string? Range)> Requests { get; } = new();

    public ConcurrentDictionary<string, byte[]> Blobs { get; } = new();

    public ConcurrentDictionary<string, (byte[] Body, string MediaType)> Manifests { get; } = new();

    /// <summary>Runs first; return true when it handled the request.</summary>
    public Func<HttpListenerContext, bool>? Intercept { get; set; }

    public bool SendDigestHeader { get; set; } = true;

    /// <summary>distribution 2.8: /manifests/&lt;blob digest&gt; answers 500.</summary>
    public bool ManifestEndpoint500ForBlobs { get; set; }

    public static string Digest(byte[] data) => "sha256:" + Convert.ToHexString(SHA256.HashData(data)).ToLowerInvariant();

    public string AddBlob(byte[] data)
    {
        string d = Digest(data);
        Blobs[d] = data;
        return d;
    }

    public string AddManifest(string repo, string tag, object manifest, string mediaType = "application/vnd.oci.image.manifest.v1+json")
    {
        byte[] body = JsonSerializer.SerializeToUtf8Bytes(manifest);
        string d = Digest(body);
        Manifests[$"{repo}/{tag}"] = (body, mediaType);
        Manifests[$"{repo}/{d}"] = (body, mediaType);
        return d;
    }

    /// <summary>An OCI manifest with the given layers (mediaType, data, title).</summary>
    public string AddImage(string repo, string tag, params (string MediaType, byte[] Data, string? Title)[] layers)
    {
        var config = AddBlob(Encoding.UTF8.GetBytes("{}"));
        var manifest = new Dictionary<string, object>
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = "application/vnd.oci.image.manifest.v1+json",
            ["artifactType"] = "application/vnd.nosi.disk-image.v1+gzip",
            ["config"] = new { mediaType = "application/vnd.oci.empty.v1+json", digest = config, size = 2 },
            ["layers"] = layers.Select(l => new Dictionary<string, object>
            {
                ["mediaType"] = l.MediaType,
                ["digest"] = AddBlob(l.Data),
                ["size"] = l.Data.Length,
                ["annotations"] = l.Title is null ? new Dictionary<string, string>() : new Dictionary<string, string> { ["org.opencontainers.image.title"] = l.Title },
            }).ToArray(),
        };
        return AddManifest(repo, tag, manifest);
    }

    private static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    private async Task LoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext ctx;
            try
            {
                ctx = await _listener.GetContextAsync().ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested || !_listener.IsListening)
            {
                return;
            }
            catch (HttpListenerException)
            {
                continue;
            }

            // A thread of its own per request: handlers sleep to play a slow link, and on the pool they starved it in a
            // loaded full suite, so two requests that should overlap were served one after the other.
            _ = Task.Factory.StartNew(() =>
            {
                try
                {
                    Handle(ctx);
                }
                catch (Exception)
                {
                    try
                    {
                        ctx.Response.Abort();
                    }
                    catch (Exception)
                    {
                    }
                }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
    }

    private void Handle(HttpListenerContext ctx)
    {
        var req = ctx.Request;
        Requests.Enqueue((req.HttpMethod, req.Url!.AbsolutePath, req.Headers["Authorization"], req.Headers["Range"]));
        if (Intercept?.Invoke(ctx) == true)
        {
            return;
        }

        ServeDefault(ctx);
    }

    public void ServeDefault(HttpListenerContext ctx)
    {
        var req = ctx.Request;
        string path = req.Url!.AbsolutePath;
        var res = ctx.Response;
        if (path.StartsWith("/v2/", StringComparison.Ordinal) && path.Contains("/manifests/"))
        {
            int i = path.IndexOf("/manifests/", StringComparison.Ordinal);
            string key = path[4..i] + "/" + path[(i + 11)..];
            if (Manifests.TryGetValue(key, out var m))
            {
                res.ContentType = m.MediaType;
                if (SendDigestHeader)
                {
                    res.Headers["Docker-Content-Digest"] = Digest(m.Body);
                }

                WriteBody(ctx, m.Body, 200);
                return;
            }

            string reference = path[(i + 11)..];
            WriteStatus(ctx, ManifestEndpoint500ForBlobs && Blobs.ContainsKey(reference) ? 500 : 404, "MANIFEST_UNKNOWN");
            return;
        }

        if (path.StartsWith("/v2/", StringComparison.Ordinal) && path.Contains("/blobs/"))
        {
            string digest = path[(path.IndexOf("/blobs/", StringComparison.Ordinal) + 7)..];
            if (!Blobs.TryGetValue(digest, out var data))
            {
                WriteStatus(ctx, 404, "BLOB_UNKNOWN");
                return;
            }

            ServeBytes(ctx, data, honourRange: true);
            return;
        }

        WriteStatus(ctx, 404, "NAME_UNKNOWN");
    }

    public static void ServeBytes(HttpListenerContext ctx, byte[] data, bool honourRange, int? cutAfter = null, byte[]? overrideBody = null)
    {
        var res = ctx.Response;
        byte[] body = overrideBody ?? data;
        long from = 0;
        long last = body.Length - 1;
        string? range = ctx.Request.Headers["Range"];
        if (honourRange && range is not null && range.StartsWith("bytes=", StringComparison.Ordinal))
        {
            string[] ends = range[6..].Split('-');
            from = long.Parse(ends[0]);
            last = ends[1].Length > 0 ? Math.Min(long.Parse(ends[1]), body.Length - 1) : last;
            if (from >= data.Length)
            {
                res.StatusCode = 416;
                res.Headers["Content-Range"] = $"bytes */{data.Length}";
                res.Close();
                return;
            }

            res.StatusCode = 206;
            res.Headers["Content-Range"] = $"bytes {from}-{(ends[1].Length > 0 ? last : data.Length - 1)}/{data.Length}";
        }

        res.Headers["Accept-Ranges"] = "bytes";
        res.Headers["Docker-Content-Digest"] = Digest(data);
        res.ContentType = "application/octet-stream";
        res.ContentLength64 = last + 1 - from;
        if (ctx.Request.HttpMethod == "HEAD")
        {
            res.Close();
            return;
        }

        int count = (int)(last + 1 - from);
        if (cutAfter is int cut && cut < count)
        {
            res.OutputStream.Write(body, (int)from, cut);
            res.OutputStream.Flush();
            res.Abort();
            return;
        }

        res.OutputStream.Write(body, (int)from, count);
        res.Close();
    }

    public static void WriteBody(HttpListenerContext ctx, byte[] body, int status)
    {
        var res = ctx.Response;
        res.StatusCode = status;
        res.ContentLength64 = body.Length;
        if (ctx.Request.HttpMethod != "HEAD")
        {
            res.OutputStream.Write(body);
        }

        res.Close();
    }

    public static void WriteStatus(HttpListenerContext ctx, int status, string code = "UNKNOWN")
    {
        ctx.Response.ContentType = "application/json";
        WriteBody(ctx, Encoding.UTF8.GetBytes($"{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"{code.ToLowerInvariant()}\"}}]}}"), status);
    }

    public void Dispose()
    {
        _stop.Cancel();
        try
        {
            _listener.Stop();
            _listener.Close();
        }
        catch (Exception)
        {
        }

        _loop.Wait(TimeSpan.FromSeconds(5));
    }
}
