using System.Buffers;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;

namespace OrasStaging.Oci;

/// <summary>
/// The pull side of an OCI client: resolve a reference to one layer blob, and fetch that blob with resume,
/// retries and digest verification.
/// </summary>
public sealed partial class RegistryClient : IDisposable
{
    public const int MaxManifestBytes = 4 * 1024 * 1024;
    internal const int BufferSize = 1 << 20;
    internal static readonly TimeSpan CacheProbeBudget = TimeSpan.FromSeconds(3);

    internal const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    internal const string OciIndex = "application/vnd.oci.image.index.v1+json";
    internal const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    internal const string DockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
    internal const string OciArtifact = "application/vnd.oci.artifact.manifest.v1+json";
    internal static readonly string[] ManifestTypes = { OciManifest, OciIndex, DockerManifest, DockerList, OciArtifact };

    private readonly RegistryTransport _transport;
    private readonly IOperationSink _sink;

    public RegistryClient(RegistryOptions options, IOperationSink sink)
        : this(options, sink, null)
    {
    }

    internal RegistryClient(RegistryOptions options, IOperationSink sink, HttpMessageHandler? handler)
    {
        _transport = new RegistryTransport(options, sink, handler);
        _sink = sink;
    }

    internal RegistryTransport Transport => _transport;

    public void Dispose()
    {
        // The HttpClient is shared per settings and outlives this client on purpose.
    }

    #region Resolve

    public async Task<OrasImage> ResolveAsync(ImageReference reference, ResolveOptions options, CancellationToken ct)
    {
        options ??= new ResolveOptions();
        string activity = $"Resolving {reference}";
        _sink.Progress(new ProgressInfo(activity, "Resolve", 0, null));
        _sink.Verbose($"Resolving {reference} over {(_transport.UsesPlainHttp(reference.Registry) ? "http" : "https")}.");
        OrasImage image;
        if (reference.Digest is { } pinned)
        {
            image = await ResolvePinnedAsync(reference, pinned, options, ct).ConfigureAwait(false);
        }
        else
        {
            var manifest = await FetchManifestAsync(reference, reference.Tag!, null, ct).ConfigureAwait(false);
            image = await FromManifestAsync(reference, manifest, PinnedKind.None, options, ct).ConfigureAwait(false);
        }

        _sink.Verbose($"{reference}: layer {image.Title ?? Units.ShortDigest(image.Digest)} {image.Digest}, {Units.Bytes(image.Size)}" +
            (image.ManifestDigest is null ? " (pinned blob)." : $", manifest {image.ManifestDigest}."));
        return image;
    }

    private async Task<OrasImage> ResolvePinnedAsync(ImageReference reference, string digest, ResolveOptions options, CancellationToken ct)
    {
        // Distribution 2.8 answers /manifests/<blob digest> with 500, so a 5xx here is only an answer once the
        // blob endpoint has been asked too.
        var manifestHead = Request(HttpMethod.Head, reference, $"/manifests/{digest}", $"manifest {Units.ShortDigest(digest)}") with
        {
            Accept = ManifestTypes,
            RetryTransient = false,
        };
        HttpStatusCode manifestStatus;
        using (var head = await _transport.SendAsync(manifestHead, ct).ConfigureAwait(false))
        {
            manifestStatus = head.StatusCode;
            if (head.IsSuccessStatusCode)
            {
                _sink.Verbose($"{Units.ShortDigest(digest)} names a manifest.");
                var manifest = await FetchManifestAsync(reference, digest, digest, ct).ConfigureAwait(false);
                return await FromManifestAsync(reference, manifest, PinnedKind.Manifest, options, ct).ConfigureAwait(false);
            }

            if (manifestStatus is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
            {
                throw await _transport.ErrorFromAsync(head, manifestHead, ErrorCode.ManifestNotFound, ct).ConfigureAwait(false);
            }
        }

        var blobHead = Request(HttpMethod.Head, reference, $"/blobs/{digest}", $"blob {Units.ShortDigest(digest)}");
        using (var head = await _transport.SendAsync(blobHead, ct).ConfigureAwait(false))
        {
            if (head.IsSuccessStatusCode)
            {
                _sink.Verbose($"{Units.ShortDigest(digest)} names a blob (the manifest endpoint said HTTP {(int)manifestStatus}).");
                long size = head.Content.Headers.ContentLength
                    ?? throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                        $"{reference.Registry} gave no size for blob {digest}.");
                if (head.Headers.TryGetValues("Docker-Content-Digest", out var values) && values.FirstOrDefault() is { } echoed
                    && echoed != digest)
                {
                    throw new OrasStagingException(ErrorCode.DigestMismatch,
                        $"{reference.Registry} described blob {digest} with the digest {echoed}.");
                }

                return await FromPinnedBlobAsync(reference, digest, size, options, ct).ConfigureAwait(false);
            }

            if (RetryPolicy.IsTransient(manifestStatus) && head.StatusCode == HttpStatusCode.NotFound)
            {
                // Not a blob: the manifest endpoint's 5xx was a real failure; ask again, with retries this time.
                var manifest = await FetchManifestAsync(reference, digest, digest, ct).ConfigureAwait(false);
                return await FromManifestAsync(reference, manifest, PinnedKind.Manifest, options, ct).ConfigureAwait(false);
            }

            if (head.StatusCode == HttpStatusCode.NotFound)
            {
                throw new OrasStagingException(ErrorCode.ManifestNotFound,
                    $"{digest} is neither a manifest nor a blob in {reference.Registry}/{reference.Repository} (HTTP {(int)manifestStatus} and 404).",
                    "Check the repository name and the digest.");
            }

            throw await _transport.ErrorFromAsync(head, blobHead, ErrorCode.BlobNotFound, ct).ConfigureAwait(false);
        }
    }

    private async Task<OrasImage> FromPinnedBlobAsync(ImageReference reference, string digest, long size, ResolveOptions options, CancellationToken ct)
    {
        // name:tag@<blob digest>: the tag's manifest can still tell the blob's title and media type.
        OrasDescriptor? described = null;
        ManifestBody? manifest = null;
        if (reference.Tag is { } tag)
        {
            try
            {
                manifest = await FetchManifestAsync(reference, tag, null, ct).ConfigureAwait(false);
                var image = await FromManifestAsync(reference, manifest, PinnedKind.None,
                    new ResolveOptions { Platform = options.Platform, LayerMediaType = "*" }, ct, chooseDigest: digest).ConfigureAwait(false);
                described = image.Layers.FirstOrDefault(l => l.Digest == digest);
                if (described is not null)
                {
                    return new OrasImage
                    {
                        Reference = image.Reference,
                        Registry = image.Registry,
                        Repository = image.Repository,
                        Tag = tag,
                        ManifestDigest = image.ManifestDigest,
                        PinnedKind = PinnedKind.Blob,
                        Digest = digest,
                        Size = size,
                        MediaType = described.MediaType,
                        Title = described.Title,
                        BlobUri = image.BlobUri,
                        ArtifactType = image.ArtifactType,
                        Annotations = image.Annotations,
                        Layers = image.Layers,
                        Platform = image.Platform,
                    };
                }
            }
            catch (OrasStagingException ex) when (ex.Code is ErrorCode.ManifestNotFound or ErrorCode.NoImageLayer or ErrorCode.PlatformAmbiguous)
            {
                _sink.Verbose($"The tag {tag} does not describe blob {Units.ShortDigest(digest)}: {ex.Message}");
            }
        }

        return new OrasImage
        {
            Reference = reference.ToString(),
            Registry = reference.Registry,
            Repository = reference.Repository,
            Tag = reference.Tag,
            ManifestDigest = null,
            PinnedKind = PinnedKind.Blob,
            Digest = digest,
            Size = size,
            BlobUri = BlobUriOf(reference.Registry, reference.Repository, digest),
        };
    }

    internal Uri BlobUriOf(string registry, string repository, string digest) =>
        _transport.RegistryUri(registry, $"/v2/{repository}/blobs/{digest}");

    private RegistryRequest Request(HttpMethod method, ImageReference reference, string suffix, string what) =>
        new(method, _transport.RegistryUri(reference.Registry, $"/v2/{reference.Repository}{suffix}"), reference.Registry, reference.Repository, what);

    internal sealed record ManifestBody(byte[] Body, string MediaType, string Digest);

    private async Task<ManifestBody> FetchManifestAsync(ImageReference reference, string tagOrDigest, string? expectedDigest, CancellationToken ct)
    {
        string what = expectedDigest is null ? $"manifest {tagOrDigest}" : $"manifest {Units.ShortDigest(tagOrDigest)}";
        var request = Request(HttpMethod.Get, reference, $"/manifests/{tagOrDigest}", what) with { Accept = ManifestTypes };
        using var response = await _transport.SendAsync(request, ct).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw await _transport.ErrorFromAsync(response, request, ErrorCode.ManifestNotFound, ct).ConfigureAwait(false);
        }

        byte[] body = await RegistryTransport.ReadCappedAsync(response.Content, MaxManifestBytes, "manifest", ct).ConfigureAwait(false);
        string? header = response.Headers.TryGetValues("Docker-Content-Digest", out var values) ? values.FirstOrDefault()?.Trim() : null;
        if (header is not null)
        {
            if (!ImageReference.IsValidDigest(header))
            {
                throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                    $"{reference.Registry} sent an unusable Docker-Content-Digest for {what}.");
            }

            string actual = BlobDigest.Compute(header, body);
            if (actual != header)
            {
                throw new OrasStagingException(ErrorCode.DigestMismatch,
                    $"The {what} from {reference.Registry} hashes to {actual}, but the registry said {header}.",
                    "Try again; if it persists, the registry or a proxy is corrupting responses.");
            }
        }

        if (expectedDigest is not null)
        {
            string actual = BlobDigest.Compute(expectedDigest, body);
            if (actual != expectedDigest)
            {
                throw new OrasStagingException(ErrorCode.DigestMismatch,
                    $"The {what} from {reference.Registry} hashes to {actual}, not to the digest asked for.",
                    "Try again; if it persists, the registry or a proxy is corrupting responses.");
            }
        }
        else if (header is null)
        {
            _sink.Verbose($"{reference.Registry} sent no Docker-Content-Digest for {what}; using the body's sha256.");
        }

        string digest = expectedDigest ?? header ?? BlobDigest.Compute("sha256:", body);
        string? contentType = response.Content.Headers.ContentType?.MediaType;
        string? bodyType = null;
        try
        {
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("mediaType", out var mt) && mt.ValueKind == JsonValueKind.String)
            {
                bodyType = mt.GetString();
            }
        }
        catch (JsonException)
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError, $"The {what} from {reference.Registry} is not JSON.");
        }

        string? mediaType = contentType is not null && ManifestTypes.Contains(contentType) ? contentType : bodyType ?? contentType;
        if (bodyType is not null && mediaType is not null && ManifestTypes.Contains(bodyType) && bodyType != mediaType)
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                $"The {what} from {reference.Registry} says it is {bodyType}, but was served as {mediaType}.");
        }

        if (mediaType is null || !ManifestTypes.Contains(mediaType))
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                $"The {what} from {reference.Registry} has the media type '{mediaType ?? "(none)"}', which is not an OCI or Docker v2 manifest or index.");
        }

        return new ManifestBody(body, mediaType, digest);
    }

    private async Task<OrasImage> FromManifestAsync(ImageReference reference, ManifestBody manifest, PinnedKind pinned, ResolveOptions options,
        CancellationToken ct, string? chooseDigest = null)
    {
        string? platform = null;
        if (manifest.MediaType is OciIndex or DockerList)
        {
            var entries = ParseIndex(manifest.Body);
            var entry = Selection.ChoosePlatform(entries, options.Platform, Selection.HostOs(), Selection.HostArchitecture(), reference.ToString());
            platform = entry.Platform;
            _sink.Verbose($"{reference} is an index; taking {entry.Platform} ({Units.ShortDigest(entry.Digest)}).");
            manifest = await FetchManifestAsync(reference, entry.Digest, entry.Digest, ct).ConfigureAwait(false);
            if (manifest.MediaType is OciIndex or DockerList)
            {
                throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                    $"The {entry.Platform} entry of {reference} is another index; nested indexes are not supported.");
            }
        }

        var (layers, artifactType, annotations) = ParseManifest(manifest.Body, manifest.MediaType);
        OrasDescriptor chosen = chooseDigest is not null && layers.FirstOrDefault(l => l.Digest == chooseDigest) is { } pinnedLayer
            ? pinnedLayer
            : Selection.ChooseLayer(layers, options.LayerTitle, options.LayerMediaType, reference.ToString());
        if (chooseDigest is null)
        {
            await CrossCheckSidecarAsync(reference, chosen, layers, ct).ConfigureAwait(false);
        }

        return new OrasImage
        {
            Reference = reference.ToString(),
            Registry = reference.Registry,
            Repository = reference.Repository,
            Tag = reference.Tag,
            ManifestDigest = manifest.Digest,
            PinnedKind = pinned,
            Digest = chosen.Digest,
            Size = chosen.Size,
            MediaType = chosen.MediaType,
            Title = chosen.Title,
            BlobUri = BlobUriOf(reference.Registry, reference.Repository, chosen.Digest),
            ArtifactType = artifactType,
            Annotations = annotations,
            Layers = layers,
            Platform = platform,
        };
    }

    internal static List<PlatformEntry> ParseIndex(byte[] body)
    {
        using var doc = ParseObject(body, "index");
        var result = new List<PlatformEntry>();
        if (!doc.RootElement.TryGetProperty("manifests", out var manifests) || manifests.ValueKind != JsonValueKind.Array)
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError, "The index has no 'manifests' list.");
        }

        foreach (var m in manifests.EnumerateArray())
        {
            string? digest = Str(m, "digest");
            if (!ImageReference.IsValidDigest(digest))
            {
                continue;
            }

            string? os = null, arch = null, variant = null;
            if (m.TryGetProperty("platform", out var p) && p.ValueKind == JsonValueKind.Object)
            {
                os = Str(p, "os");
                arch = Str(p, "architecture");
                variant = Str(p, "variant");
            }

            result.Add(new PlatformEntry(digest!, Str(m, "mediaType") ?? OciManifest, m.TryGetProperty("size", out var s) && s.TryGetInt64(out long size) ? size : 0, os, arch, variant));
        }

        return result;
    }

    /// <summary>
    /// A manifest or index is a JSON object; anything else (malformed JSON, an array) is the registry breaking the
    /// spec, and says so with RegistryProtocolError rather than surfacing as a parser exception.
    /// </summary>
    private static JsonDocument ParseObject(byte[] body, string what)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body);
        }
        catch (JsonException ex)
        {
            throw new OrasStagingException(ErrorCode.RegistryProtocolError, $"The {what} is not valid JSON: {ex.Message}",
                "Report it to the registry's operator; run with -Verbose to see which request returned it.", ex);
        }

        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            var kind = doc.RootElement.ValueKind;
            doc.Dispose();
            throw new OrasStagingException(ErrorCode.RegistryProtocolError, $"The {what} is a JSON {kind}, not an object.",
                "Report it to the registry's operator; run with -Verbose to see which request returned it.");
        }

        return doc;
    }

    internal static (List<OrasDescriptor> Layers, string? ArtifactType, IReadOnlyDictionary<string, string> Annotations) ParseManifest(byte[] body, string mediaType)
    {
        using var doc = ParseObject(body, "manifest");
        var root = doc.RootElement;
        var layers = new List<OrasDescriptor>();
        string listName = mediaType == OciArtifact ? "blobs" : "layers";
        if (root.TryGetProperty(listName, out var list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (var l in list.EnumerateArray())
            {
                string? digest = Str(l, "digest");
                if (!ImageReference.IsValidDigest(digest) || !l.TryGetProperty("size", out var s) || !s.TryGetInt64(out long size) || size < 0)
                {
                    throw new OrasStagingException(ErrorCode.RegistryProtocolError, "The manifest has a layer without a valid digest and size.");
                }

                var annotations = Annotations(l);
                layers.Add(new OrasDescriptor
                {
                    MediaType = Str(l, "mediaType") ?? "application/octet-stream",
                    Digest = digest!,
                    Size = size,
                    Title = annotations.TryGetValue(Selection.TitleAnnotation, out var t) ? t : null,
                    Annotations = annotations,
                });
            }
        }

        string? artifactType = Str(root, "artifactType");
        if (artifactType is null && root.TryGetProperty("config", out var config) && Str(config, "mediaType") is { } configType
            && configType is not ("application/vnd.oci.image.config.v1+json" or "application/vnd.docker.container.image.v1+json" or "application/vnd.oci.empty.v1+json"))
        {
            artifactType = configType;
        }

        return (layers, artifactType, Annotations(root));
    }

    private static Dictionary<string, string> Annotations(JsonElement e)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (e.TryGetProperty("annotations", out var a) && a.ValueKind == JsonValueKind.Object)
        {
            foreach (var p in a.EnumerateObject())
            {
                if (p.Value.ValueKind == JsonValueKind.String)
                {
                    result[p.Name] = p.Value.GetString()!;
                }
            }
        }

        return result;
    }

    private static string? Str(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    /// <summary>When the manifest carries "&lt;title&gt;.sha256", its first word must be the layer digest's hex.</summary>
    private async Task CrossCheckSidecarAsync(ImageReference reference, OrasDescriptor chosen, List<OrasDescriptor> layers, CancellationToken ct)
    {
        if (chosen.Title is null || !chosen.Digest.StartsWith("sha256:", StringComparison.Ordinal))
        {
            return;
        }

        var sidecar = layers.FirstOrDefault(l => l.Title == chosen.Title + ".sha256");
        if (sidecar is null || sidecar.Size > 64 * 1024)
        {
            return;
        }

        string text;
        try
        {
            var request = new RegistryRequest(HttpMethod.Get, BlobUriOf(reference.Registry, reference.Repository, sidecar.Digest),
                reference.Registry, reference.Repository, $"sidecar {sidecar.Title}");
            using var response = await _transport.SendAsync(request, ct).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                _sink.Warning($"Could not fetch the checksum sidecar {sidecar.Title} (HTTP {(int)response.StatusCode}); relying on the layer digest alone.");
                return;
            }

            byte[] body = await RegistryTransport.ReadCappedAsync(response.Content, 64 * 1024, "checksum sidecar", ct).ConfigureAwait(false);
            if (BlobDigest.Compute(sidecar.Digest, body) != sidecar.Digest)
            {
                throw new OrasStagingException(ErrorCode.DigestMismatch, $"The checksum sidecar {sidecar.Title} does not match its own digest.");
            }

            text = Encoding.UTF8.GetString(body);
        }
        catch (OrasStagingException ex) when (ex.Code is ErrorCode.RegistryUnavailable or ErrorCode.RegistryProtocolError)
        {
            _sink.Warning($"Could not fetch the checksum sidecar {sidecar.Title}: {ex.Message}");
            return;
        }

        string first = text.Trim().Split((char[]?)null, 2, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? string.Empty;
        string expected = chosen.Digest["sha256:".Length..];
        if (first.Length != 64 || !first.All(Uri.IsHexDigit))
        {
            _sink.Warning($"The checksum sidecar {sidecar.Title} does not start with a sha256 hex digest; ignoring it.");
            return;
        }

        if (!first.Equals(expected, StringComparison.OrdinalIgnoreCase))
        {
            throw new OrasStagingException(ErrorCode.DigestMismatch,
                $"The checksum sidecar {sidecar.Title} says sha256:{first.ToLowerInvariant()}, but the manifest gives {chosen.Title} the digest {chosen.Digest}.",
                "The artifact was published inconsistently; tell its publisher.");
        }

        _sink.Verbose($"The sidecar {sidecar.Title} agrees with the layer digest.");
    }

    #endregion
}
