using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace OrasStaging.TestKit;

public sealed class PushOptions
{
    /// <summary>host:port of the registry or of the proxy in front of it.</summary>
    public string Registry { get; set; } = "";
    public string Repository { get; set; } = "lab/debian";
    public string Tag { get; set; } = "latest";
    /// <summary>The raw disk image (not needed with <see cref="Helm"/>).</summary>
    public string? ImagePath { get; set; }
    /// <summary>gzip | zstd | xz | bzip2 | none.</summary>
    public string Compression { get; set; } = "gzip";
    /// <summary>The layer's org.opencontainers.image.title; default "&lt;image name&gt;.img.gz" (suffix per compression).</summary>
    public string? Title { get; set; }
    /// <summary>Tag an OCI index over linux/amd64 (this image) and linux/arm64 (a distinct copy).</summary>
    public bool Index { get; set; }
    /// <summary>Push a Helm-chart-shaped artifact instead of a disk image.</summary>
    public bool Helm { get; set; }
    /// <summary>Annotate the image layer with <see cref="ArtifactPusher.RawSizeAnnotation"/>.</summary>
    public bool SizeAnnotation { get; set; } = true;
    /// <summary>The value of that annotation instead of the real raw size (a publisher's wrong metadata, a lying one).</summary>
    public long? DeclaredSize { get; set; }
    public string? Username { get; set; }
    public string? Password { get; set; }
    public bool Tls { get; set; }
    public string? CaCertPath { get; set; }
}

public sealed class PlatformResult
{
    [JsonPropertyName("platform")] public string Platform { get; init; } = "";
    [JsonPropertyName("manifestDigest")] public string ManifestDigest { get; init; } = "";
    [JsonPropertyName("manifestSize")] public long ManifestSize { get; init; }
    [JsonPropertyName("digest")] public string Digest { get; init; } = "";
    [JsonPropertyName("size")] public long Size { get; init; }
    [JsonPropertyName("rawSha256")] public string RawSha256 { get; init; } = "";
    [JsonPropertyName("rawSize")] public long RawSize { get; init; }
}

/// <summary>The JSON line <c>push</c> prints. With an index, the top-level fields describe linux/amd64.</summary>
public sealed class PushResult
{
    [JsonPropertyName("reference")] public string Reference { get; init; } = "";
    [JsonPropertyName("repository")] public string Repository { get; init; } = "";
    [JsonPropertyName("tag")] public string Tag { get; init; } = "";
    [JsonPropertyName("manifestDigest")] public string ManifestDigest { get; init; } = "";
    [JsonPropertyName("manifestSize")] public long ManifestSize { get; init; }
    [JsonPropertyName("manifestMediaType")] public string ManifestMediaType { get; init; } = "";
    [JsonPropertyName("artifactType")] public string? ArtifactType { get; init; }
    [JsonPropertyName("digest")] public string Digest { get; init; } = "";
    [JsonPropertyName("size")] public long Size { get; init; }
    [JsonPropertyName("title")] public string? Title { get; init; }
    [JsonPropertyName("mediaType")] public string MediaType { get; init; } = "";
    [JsonPropertyName("compression")] public string Compression { get; init; } = "";
    [JsonPropertyName("sidecarDigest")] public string? SidecarDigest { get; init; }
    [JsonPropertyName("metadataDigest")] public string? MetadataDigest { get; init; }
    [JsonPropertyName("configDigest")] public string ConfigDigest { get; init; } = "";
    [JsonPropertyName("indexDigest")] public string? IndexDigest { get; init; }
    [JsonPropertyName("rawSha256")] public string? RawSha256 { get; init; }
    [JsonPropertyName("rawSize")] public long? RawSize { get; init; }
    [JsonPropertyName("platforms")] public List<PlatformResult>? Platforms { get; init; }
}

/// <summary>Publishes nosi-shaped disk-image artifacts (and a few look-alikes) with the distribution API.</summary>
public static partial class ArtifactPusher
{
    public const string ManifestMediaType = "application/vnd.oci.image.manifest.v1+json";
    public const string IndexMediaType = "application/vnd.oci.image.index.v1+json";
    public const string EmptyMediaType = "application/vnd.oci.empty.v1+json";
    public const string EmptyDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    public const string ArtifactTypePrefix = "application/vnd.nosi.disk-image.v1";
    public const string LayerMediaTypePrefix = "application/vnd.nosi.disk-image.layer.v1";
    public const string MetadataMediaType = "application/vnd.nosi.metadata.v1+json";
    public const string TitleAnnotation = "org.opencontainers.image.title";
    /// <summary>The raw (uncompressed) image size in bytes, as a decimal string, on the image layer.</summary>
    public const string RawSizeAnnotation = "org.nosi.image.size";
    public const string HelmConfigMediaType = "application/vnd.cncf.helm.config.v1+json";
    public const string HelmChartMediaType = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
    private const string Created = "2026-01-01T00:00:00Z";

    /// <summary>"+gzip" etc., or "" for none.</summary>
    public static string MediaTypeSuffix(string compression) => NormalizeCompression(compression) switch
    {
        "none" => "",
        var c => "+" + c,
    };

    public static string FileSuffix(string compression) => NormalizeCompression(compression) switch
    {
        "gzip" => ".gz",
        "zstd" => ".zst",
        "xz" => ".xz",
        "bzip2" => ".bz2",
        _ => "",
    };

    public static string NormalizeCompression(string? compression) => (compression ?? "gzip").ToLowerInvariant() switch
    {
        "gzip" or "gz" => "gzip",
        "zstd" or "zst" => "zstd",
        "xz" => "xz",
        "bzip2" or "bz2" => "bzip2",
        "none" or "raw" or "" => "none",
        var c => throw new ArgumentException($"unknown compression '{c}' (gzip|zstd|xz|bzip2|none)"),
    };

    public static async Task<PushResult> PushAsync(PushOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(options.Registry);
        var compression = NormalizeCompression(options.Compression);
        using var client = new RegistryClient(options.Registry, options.Tls, options.CaCertPath, options.Username, options.Password);
        var work = Directory.CreateTempSubdirectory("orasstaging-push-");
        try
        {
            var session = new Session(client, options.Repository);
            if (options.Helm)
            {
                return await PushHelmAsync(session, options, cancellationToken).ConfigureAwait(false);
            }
            if (options.ImagePath is null) throw new ArgumentException("an image path is required");
            var image = Path.GetFullPath(options.ImagePath);
            // An already compressed image (by its magic bytes) is pushed as the layer as it is.
            var detected = DetectCompression(image);
            if (detected is not null)
            {
                if (options.Index) throw new ArgumentException("--index needs a raw image (it derives the arm64 image from it)");
                compression = detected;
            }
            var baseName = Path.GetFileName(image);
            foreach (var ext in new[] { ".gz", ".zst", ".xz", ".bz2", ".img", ".raw" })
            {
                if (baseName.EndsWith(ext, StringComparison.OrdinalIgnoreCase)) baseName = baseName[..^ext.Length];
            }
            var title = options.Title ?? baseName + ".img" + FileSuffix(compression);

            var amd64 = await PushImageManifestAsync(session, image, title, compression, options.SizeAnnotation, Path.Combine(work.FullName, "amd64"),
                options.Index ? null : options.Tag, cancellationToken, options.DeclaredSize).ConfigureAwait(false);
            if (!options.Index)
            {
                return amd64.ToResult(options, compression, indexDigest: null, platforms: null);
            }

            // A distinct arm64 image: same size, a marker in the boot code area.
            var armImage = Path.Combine(work.FullName, "arm64.img");
            File.Copy(image, armImage);
            using (var f = new FileStream(armImage, FileMode.Open, FileAccess.Write))
            {
                var marker = Encoding.ASCII.GetBytes("ORASSTAGING-ARM64");
                f.Write(marker, 0, (int)Math.Min(marker.Length, f.Length));
            }
            var arm64 = await PushImageManifestAsync(session, armImage, title, compression, options.SizeAnnotation, Path.Combine(work.FullName, "arm64"),
                null, cancellationToken, options.DeclaredSize).ConfigureAwait(false);
            var index = Json(w =>
            {
                w.WriteNumber("schemaVersion", 2);
                w.WriteString("mediaType", IndexMediaType);
                w.WriteStartArray("manifests");
                foreach (var (pushed, arch) in new[] { (amd64, "amd64"), (arm64, "arm64") })
                {
                    w.WriteStartObject();
                    w.WriteString("mediaType", ManifestMediaType);
                    w.WriteString("digest", pushed.ManifestDigest);
                    w.WriteNumber("size", pushed.ManifestSize);
                    w.WriteString("artifactType", pushed.ArtifactType);
                    w.WriteStartObject("platform");
                    w.WriteString("architecture", arch);
                    w.WriteString("os", "linux");
                    w.WriteEndObject();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            });
            var indexDigest = await session.PutManifestAsync(index, IndexMediaType, options.Tag, cancellationToken).ConfigureAwait(false);
            return amd64.ToResult(options, compression, indexDigest, [amd64.Platform("linux/amd64"), arm64.Platform("linux/arm64")]);
        }
        finally
        {
            try { work.Delete(recursive: true); } catch (IOException) { }
        }
    }

    private sealed record Pushed(string ManifestDigest, long ManifestSize, string ArtifactType, string Digest, long Size, string Title, string MediaType,
        string SidecarDigest, string MetadataDigest, string RawSha256, long RawSize, string Repository, string Registry)
    {
        public PlatformResult Platform(string platform) => new()
        {
            Platform = platform, ManifestDigest = ManifestDigest, ManifestSize = ManifestSize, Digest = Digest, Size = Size, RawSha256 = RawSha256, RawSize = RawSize,
        };

        public PushResult ToResult(PushOptions o, string compression, string? indexDigest, List<PlatformResult>? platforms) => new()
        {
            Reference = $"{o.Registry}/{o.Repository}:{o.Tag}",
            Repository = o.Repository,
            Tag = o.Tag,
            ManifestDigest = ManifestDigest,
            ManifestSize = ManifestSize,
            ManifestMediaType = ManifestMediaType,
            ArtifactType = ArtifactType,
            Digest = Digest,
            Size = Size,
            Title = Title,
            MediaType = MediaType,
            Compression = compression,
            SidecarDigest = SidecarDigest,
            MetadataDigest = MetadataDigest,
            ConfigDigest = EmptyDigest,
            IndexDigest = indexDigest,
            RawSha256 = RawSha256,
            RawSize = RawSize,
            Platforms = platforms,
        };
    }

    private static async Task<Pushed> PushImageManifestAsync(Session session, string image, string title, string compression, bool sizeAnnotation,
        string work, string? tag, CancellationToken cancellationToken, long? declaredSize = null)
    {
        Directory.CreateDirectory(work);
        bool precompressed = DetectCompression(image) is not null;
        var (rawSha256, rawSize) = await HashRawAsync(image, precompressed ? compression : "none", cancellationToken).ConfigureAwait(false);
        var layerPath = image;
        if (!precompressed)
        {
            layerPath = Path.Combine(work, "layer");
            await CompressAsync(image, layerPath, compression, cancellationToken).ConfigureAwait(false);
        }
        var (layerDigest, layerSize) = await session.PushBlobFileAsync(layerPath, cancellationToken).ConfigureAwait(false);
        var layerHex = layerDigest["sha256:".Length..];

        var sidecar = Encoding.UTF8.GetBytes($"{layerHex}  {title}\n");
        var sidecarDigest = await session.PushBlobAsync(sidecar, cancellationToken).ConfigureAwait(false);

        var metadata = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["name"] = title,
            ["format"] = "raw",
            ["compression"] = compression,
            ["image_size"] = rawSize,
            ["image_sha256"] = rawSha256,
            ["layer_sha256"] = layerHex,
            ["created"] = Created,
        }, new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n");
        var metadataDigest = await session.PushBlobAsync(metadata, cancellationToken).ConfigureAwait(false);
        await session.PushBlobAsync("{}"u8.ToArray(), cancellationToken).ConfigureAwait(false);

        var suffix = MediaTypeSuffix(compression);
        var artifactType = ArtifactTypePrefix + suffix;
        var layerMediaType = LayerMediaTypePrefix + suffix;
        var manifest = Json(w =>
        {
            w.WriteNumber("schemaVersion", 2);
            w.WriteString("mediaType", ManifestMediaType);
            w.WriteString("artifactType", artifactType);
            w.WriteStartObject("config");
            w.WriteString("mediaType", EmptyMediaType);
            w.WriteString("digest", EmptyDigest);
            w.WriteNumber("size", 2);
            w.WriteString("data", "e30=");
            w.WriteEndObject();
            w.WriteStartArray("layers");
            WriteDescriptor(w, layerMediaType, layerDigest, layerSize, title, sizeAnnotation ? declaredSize ?? rawSize : null);
            WriteDescriptor(w, "text/plain", sidecarDigest, sidecar.Length, title + ".sha256", null);
            WriteDescriptor(w, MetadataMediaType, metadataDigest, metadata.Length, "metadata.json", null);
            w.WriteEndArray();
            w.WriteStartObject("annotations");
            w.WriteString("org.opencontainers.image.created", Created);
            w.WriteEndObject();
        });
        var manifestDigest = await session.PutManifestAsync(manifest, ManifestMediaType, tag, cancellationToken).ConfigureAwait(false);
        return new Pushed(manifestDigest, manifest.Length, artifactType, layerDigest, layerSize, title, layerMediaType, sidecarDigest, metadataDigest,
            rawSha256, rawSize, session.Repository, "");
    }

    private static async Task<PushResult> PushHelmAsync(Session session, PushOptions options, CancellationToken cancellationToken)
    {
        var name = options.Repository[(options.Repository.LastIndexOf('/') + 1)..];
        const string version = "0.1.0";
        var config = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new Dictionary<string, string>
        {
            ["name"] = name, ["version"] = version, ["description"] = "OrasStaging TestKit chart", ["apiVersion"] = "v2", ["type"] = "application",
        }));
        byte[] chart;
        using (var buffer = new MemoryStream())
        {
            using (var gz = new GZipStream(buffer, CompressionLevel.Optimal, leaveOpen: true))
            using (var tar = new TarWriter(gz, TarEntryFormat.Ustar, leaveOpen: true))
            {
                var chartYaml = Encoding.UTF8.GetBytes($"apiVersion: v2\nname: {name}\nversion: {version}\ndescription: OrasStaging TestKit chart\ntype: application\n");
                var entry = new UstarTarEntry(TarEntryType.RegularFile, $"{name}/Chart.yaml")
                {
                    DataStream = new MemoryStream(chartYaml),
                    ModificationTime = DateTimeOffset.Parse(Created, System.Globalization.CultureInfo.InvariantCulture),
                    Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
                };
                tar.WriteEntry(entry);
            }
            chart = buffer.ToArray();
        }
        var configDigest = await session.PushBlobAsync(config, cancellationToken).ConfigureAwait(false);
        var chartDigest = await session.PushBlobAsync(chart, cancellationToken).ConfigureAwait(false);
        var manifest = Json(w =>
        {
            w.WriteNumber("schemaVersion", 2);
            w.WriteString("mediaType", ManifestMediaType);
            w.WriteStartObject("config");
            w.WriteString("mediaType", HelmConfigMediaType);
            w.WriteString("digest", configDigest);
            w.WriteNumber("size", config.Length);
            w.WriteEndObject();
            w.WriteStartArray("layers");
            WriteDescriptor(w, HelmChartMediaType, chartDigest, chart.Length, null, null);
            w.WriteEndArray();
            w.WriteStartObject("annotations");
            w.WriteString("org.opencontainers.image.created", Created);
            w.WriteString("org.opencontainers.image.title", name);
            w.WriteString("org.opencontainers.image.version", version);
            w.WriteEndObject();
        });
        var manifestDigest = await session.PutManifestAsync(manifest, ManifestMediaType, options.Tag, cancellationToken).ConfigureAwait(false);
        return new PushResult
        {
            Reference = $"{options.Registry}/{options.Repository}:{options.Tag}",
            Repository = options.Repository,
            Tag = options.Tag,
            ManifestDigest = manifestDigest,
            ManifestSize = manifest.Length,
            ManifestMediaType = ManifestMediaType,
            ArtifactType = null,
            Digest = chartDigest,
            Size = chart.Length,
            Title = null,
            MediaType = HelmChartMediaType,
            Compression = "gzip",
            ConfigDigest = configDigest,
        };
    }

    private static void WriteDescriptor(Utf8JsonWriter w, string mediaType, string digest, long size, string? title, long? rawSize)
    {
        w.WriteStartObject();
        w.WriteString("mediaType", mediaType);
        w.WriteString("digest", digest);
        w.WriteNumber("size", size);
        if (title is not null || rawSize is not null)
        {
            w.WriteStartObject("annotations");
            if (rawSize is long r) w.WriteString(RawSizeAnnotation, r.ToString(System.Globalization.CultureInfo.InvariantCulture));
            if (title is not null) w.WriteString(TitleAnnotation, title);
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    private static byte[] Json(Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>gzip, zstd, xz or bzip2 by the file's magic bytes; null for anything else (a raw image).</summary>
    public static string? DetectCompression(string path)
    {
        Span<byte> head = stackalloc byte[6];
        int n;
        using (var f = File.OpenRead(path))
        {
            n = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        head = head[..n];
        if (head.StartsWith((ReadOnlySpan<byte>)[0x1F, 0x8B])) return "gzip";
        if (head.StartsWith((ReadOnlySpan<byte>)[0x28, 0xB5, 0x2F, 0xFD])) return "zstd";
        if (head.StartsWith((ReadOnlySpan<byte>)[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00])) return "xz";
        if (head.StartsWith((ReadOnlySpan<byte>)[0x42, 0x5A, 0x68])) return "bzip2";
        return null;
    }

    /// <summary>SHA-256 and length of the raw image, decompressing on the fly when the file is compressed.</summary>
    private static async Task<(string Sha256, long Size)> HashRawAsync(string path, string compression, CancellationToken cancellationToken)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long size = 0;
        var buffer = new byte[1 << 20];
        async Task Drain(Stream stream)
        {
            int n;
            while ((n = await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
            {
                sha.AppendData(buffer, 0, n);
                size += n;
            }
        }
        if (compression is "none" or "gzip")
        {
            await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
            if (compression == "gzip")
            {
                await using var gz = new GZipStream(file, CompressionMode.Decompress);
                await Drain(gz).ConfigureAwait(false);
            }
            else
            {
                await Drain(file).ConfigureAwait(false);
            }
        }
        else
        {
            var psi = new ProcessStartInfo(compression) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "-d", "-c", path }) psi.ArgumentList.Add(a);
            using var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {compression}");
            var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
            await Drain(process.StandardOutput.BaseStream).ConfigureAwait(false);
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
            if (process.ExitCode != 0) throw new InvalidOperationException($"{compression} -d failed ({process.ExitCode}): {await stderr.ConfigureAwait(false)}");
        }
        return (Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant(), size);
    }

    /// <summary>gzip in-process (deterministic, fast); zstd, xz and bzip2 with their command-line tools.</summary>
    public static async Task CompressAsync(string input, string output, string compression, CancellationToken cancellationToken)
    {
        compression = NormalizeCompression(compression);
        if (compression == "none")
        {
            File.Copy(input, output, overwrite: true);
            return;
        }
        if (compression == "gzip")
        {
            await using var src = new FileStream(input, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
            await using var dst = new FileStream(output, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20, useAsync: true);
            await using var gz = new GZipStream(dst, CompressionLevel.Fastest);
            await src.CopyToAsync(gz, 1 << 20, cancellationToken).ConfigureAwait(false);
            return;
        }
        string[] args = compression switch
        {
            "zstd" => ["-q", "-c", "-3", "-T0", input],
            "xz" => ["-c", "-1", "-T0", input],
            _ => ["-c", "-1", input],
        };
        var psi = new ProcessStartInfo(compression) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process process;
        try
        {
            process = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException($"'{compression}' was not found. Run: sudo apt-get install -y {compression}", ex);
        }
        using (process)
        {
            var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
            await using (var dst = new FileStream(output, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20, useAsync: true))
            {
                await process.StandardOutput.BaseStream.CopyToAsync(dst, 1 << 20, cancellationToken).ConfigureAwait(false);
            }
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
            if (process.ExitCode != 0) throw new InvalidOperationException($"{compression} failed ({process.ExitCode}): {await stderr.ConfigureAwait(false)}");
        }
    }

    /// <summary>Blob and manifest uploads for one repository.</summary>
    private sealed class Session(RegistryClient client, string repository)
    {
        public string Repository { get; } = repository;
        private string Scope => $"repository:{Repository}:pull,push";

        public async Task<string> PushBlobAsync(byte[] data, CancellationToken cancellationToken)
        {
            var digest = "sha256:" + Convert.ToHexString(SHA256.HashData(data)).ToLowerInvariant();
            await UploadAsync(digest, () => new ByteArrayContent(data), cancellationToken).ConfigureAwait(false);
            return digest;
        }

        public async Task<(string Digest, long Size)> PushBlobFileAsync(string path, CancellationToken cancellationToken)
        {
            string digest;
            await using (var f = File.OpenRead(path))
            {
                digest = "sha256:" + Convert.ToHexString(await SHA256.HashDataAsync(f, cancellationToken).ConfigureAwait(false)).ToLowerInvariant();
            }
            await UploadAsync(digest, () => new StreamContent(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true), 1 << 20), cancellationToken).ConfigureAwait(false);
            return (digest, new FileInfo(path).Length);
        }

        private async Task UploadAsync(string digest, Func<HttpContent> content, CancellationToken cancellationToken)
        {
            using (var head = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Head, new Uri(client.BaseUri, $"/v2/{Repository}/blobs/{digest}")), Scope, cancellationToken).ConfigureAwait(false))
            {
                if (head.StatusCode == HttpStatusCode.OK) return;
            }
            // POST first: it is bodiless, so authentication happens before the (possibly huge) PUT.
            Uri location;
            using (var start = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Post, new Uri(client.BaseUri, $"/v2/{Repository}/blobs/uploads/")), Scope, cancellationToken).ConfigureAwait(false))
            {
                await EnsureAsync(start, HttpStatusCode.Accepted, "blob upload POST", cancellationToken).ConfigureAwait(false);
                var loc = start.Headers.Location ?? throw new HttpRequestException("upload POST without Location");
                location = loc.IsAbsoluteUri ? loc : new Uri(start.RequestMessage!.RequestUri!, loc);
            }
            var put = new UriBuilder(location);
            put.Query = (string.IsNullOrEmpty(put.Query) ? "" : put.Query.TrimStart('?') + "&") + "digest=" + Uri.EscapeDataString(digest);
            using var done = await client.SendAsync(() =>
            {
                var c = content();
                c.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                return new HttpRequestMessage(HttpMethod.Put, put.Uri) { Content = c };
            }, Scope, cancellationToken).ConfigureAwait(false);
            await EnsureAsync(done, HttpStatusCode.Created, "blob upload PUT", cancellationToken).ConfigureAwait(false);
        }

        public async Task<string> PutManifestAsync(byte[] manifest, string mediaType, string? tag, CancellationToken cancellationToken)
        {
            var digest = "sha256:" + Convert.ToHexString(SHA256.HashData(manifest)).ToLowerInvariant();
            using var response = await client.SendAsync(() =>
            {
                var c = new ByteArrayContent(manifest);
                c.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
                return new HttpRequestMessage(HttpMethod.Put, new Uri(client.BaseUri, $"/v2/{Repository}/manifests/{tag ?? digest}")) { Content = c };
            }, Scope, cancellationToken).ConfigureAwait(false);
            await EnsureAsync(response, HttpStatusCode.Created, "manifest PUT", cancellationToken).ConfigureAwait(false);
            return digest;
        }

        private static async Task EnsureAsync(HttpResponseMessage response, HttpStatusCode expected, string what, CancellationToken cancellationToken)
        {
            if (response.StatusCode == expected) return;
            var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            throw new HttpRequestException($"{what} answered {(int)response.StatusCode}: {body}");
        }
    }
}
