using System.Net;

namespace OrasStaging.Oci;

/// <summary>
/// The pull side of an OCI client: resolve a reference to one layer blob, and fetch that blob with resume,
/// retries and digest verification. Resolving is here and in <c>RegistryClient.Manifests.cs</c>; fetching is
/// in <c>RegistryClient.Fetch.cs</c>, with a stream (<c>.Stream.cs</c>) and a file (<c>.Download.cs</c>) over it.
/// </summary>
public sealed partial class RegistryClient
{
    public const int MaxManifestBytes = 4 * 1024 * 1024;
    internal const int BufferSize = 1 << 20;

    internal const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    internal const string OciIndex = "application/vnd.oci.image.index.v1+json";
    internal const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    internal const string DockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
    internal const string OciArtifact = "application/vnd.oci.artifact.manifest.v1+json";
    internal static readonly string[] ManifestTypes = { OciManifest, OciIndex, DockerManifest, DockerList, OciArtifact };

    private readonly RegistryTransport _transport;
    private readonly WithcacheSource _cache;
    private readonly IOperationSink _sink;

    public RegistryClient(RegistryOptions options, IOperationSink sink)
        : this(options, sink, null)
    {
    }

    internal RegistryClient(RegistryOptions options, IOperationSink sink, HttpMessageHandler? handler)
    {
        _transport = new RegistryTransport(options, sink, handler);
        _cache = new WithcacheSource(_transport, sink);
        _endpoints = new Mirrors.SourceTransports(options, sink, handler, _transport);
        _sink = sink;
    }

    public async Task<OrasImage> ResolveAsync(ImageReference reference, ResolveOptions options, CancellationToken ct)
    {
        options ??= new ResolveOptions();
        string activity = $"Resolving {reference}";
        _sink.Progress(new ProgressInfo(activity, "Resolve", 0, null));
        _ = PlanOf(reference); // a blocked reference is refused before any request
        _sink.Verbose($"Resolving {reference} over " + (_transport.UsesPlainHttp(reference.Registry) ? "http."
            : _transport.SchemeUndecided(reference.Registry) ? "https (a loopback registry that does not speak TLS gets plain http)." : "https."));
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

    private Task<OrasImage> ResolvePinnedAsync(ImageReference reference, string digest, ResolveOptions options, CancellationToken ct) =>
        AcrossAsync(reference, Mirrors.SourceRoles.Manifest, at => ResolvePinnedAtAsync(reference, at, digest, options, ct), ct);

    private async Task<OrasImage> ResolvePinnedAtAsync(ImageReference reference, Mirrors.SourceEndpoint at, string digest, ResolveOptions options,
        CancellationToken ct)
    {
        // Distribution 2.8 answers /manifests/<blob digest> with 500, so a 5xx here is only an answer once the
        // blob endpoint has been asked too.
        var manifestHead = Request(HttpMethod.Head, at, $"/manifests/{digest}", $"manifest {Units.ShortDigest(digest)}") with
        {
            Accept = ManifestTypes,
            RetryTransient = false,
        };
        HttpStatusCode manifestStatus;
        using (var head = await at.Transport.SendAsync(manifestHead, ct).ConfigureAwait(false))
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
                throw await at.Transport.ErrorFromAsync(head, manifestHead, ErrorCode.ManifestNotFound, ct).ConfigureAwait(false);
            }
        }

        var blobHead = Request(HttpMethod.Head, at, $"/blobs/{digest}", $"blob {Units.ShortDigest(digest)}");
        using (var head = await at.Transport.SendAsync(blobHead, ct).ConfigureAwait(false))
        {
            if (head.IsSuccessStatusCode)
            {
                _sink.Verbose($"{Units.ShortDigest(digest)} names a blob (the manifest endpoint said HTTP {(int)manifestStatus}).");
                long size = head.Content.Headers.ContentLength
                    ?? throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                        $"{at.Reference.Registry} gave no size for blob {digest}.");
                if (head.Headers.TryGetValues("Docker-Content-Digest", out var values) && values.FirstOrDefault() is { } echoed
                    && !Digest.AreEqual(echoed, digest))
                {
                    throw new OrasStagingException(ErrorCode.DigestMismatch,
                        $"{at.Reference.Registry} described blob {digest} with the digest {echoed}.");
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
                    $"{digest} is neither a manifest nor a blob in {at.Reference.Registry}/{at.Reference.Repository} (HTTP {(int)manifestStatus} and 404).",
                    "Check the repository name and the digest.");
            }

            throw await at.Transport.ErrorFromAsync(head, blobHead, ErrorCode.BlobNotFound, ct).ConfigureAwait(false);
        }
    }

    private async Task<OrasImage> FromPinnedBlobAsync(ImageReference reference, string digest, long size, ResolveOptions options, CancellationToken ct)
    {
        // name:tag@<blob digest>: the tag's manifest can still tell the blob's title and media type.
        if (reference.Tag is { } tag)
        {
            try
            {
                var manifest = await FetchManifestAsync(reference, tag, null, ct).ConfigureAwait(false);
                var (selection, facts) = await ChooseLayerAsync(reference, manifest,
                    new ResolveOptions { Platform = options.Platform, DiskType = options.DiskType, TargetFormat = options.TargetFormat, LayerMediaType = "*" },
                    ct, chooseDigest: digest).ConfigureAwait(false);
                if (facts.Layers.FirstOrDefault(l => Digest.AreEqual(l.Digest, digest)) is { } described)
                {
                    return NewImage(reference, PinnedKind.Blob, digest, size, described, facts,
                        Digest.AreEqual(selection.Layer.Digest, digest) ? selection : null);
                }
            }
            catch (OrasStagingException ex) when (ex.Code is ErrorCode.ManifestNotFound or ErrorCode.NoImageLayer or ErrorCode.PlatformAmbiguous)
            {
                _sink.Verbose($"The tag {tag} does not describe blob {Units.ShortDigest(digest)}: {ex.Message}");
            }
        }

        return NewImage(reference, PinnedKind.Blob, digest, size, layer: null, manifest: null);
    }

    /// <summary>What a manifest says besides the chosen layer; null for a blob pinned without a manifest.</summary>
    private sealed record ManifestFacts(string Digest, string? ArtifactType, IReadOnlyDictionary<string, string> Annotations,
        IReadOnlyList<OrasDescriptor> Layers, string? Platform);

    /// <summary>The one place an <see cref="OrasImage"/> is built.</summary>
    private OrasImage NewImage(ImageReference reference, PinnedKind pinned, string digest, long size, OrasDescriptor? layer, ManifestFacts? manifest,
        Conventions.DiskSelection? selection = null)
    {
        // Registry and Repository are the origin's (after a registries.conf location rewrite): downloads go there.
        var plan = PlanOf(reference);
        return NewImage(reference, plan, pinned, digest, size, layer, manifest, selection);
    }

    private OrasImage NewImage(ImageReference reference, Mirrors.SourcePlan plan, PinnedKind pinned, string digest, long size, OrasDescriptor? layer,
        ManifestFacts? manifest, Conventions.DiskSelection? selection = null) => new()
    {
        Reference = reference.ToString(),
        Registry = plan.Origin.Registry,
        Repository = plan.Origin.Repository,
        Tag = reference.Tag,
        ManifestDigest = manifest?.Digest,
        PinnedKind = pinned,
        Digest = digest,
        Size = size,
        MediaType = layer?.MediaType,
        Title = layer?.Title,
        BlobUri = BlobUriOf(plan.Origin.Registry, plan.Origin.Repository, digest),
        ArtifactType = manifest?.ArtifactType,
        Annotations = manifest?.Annotations ?? new Dictionary<string, string>(),
        Layers = manifest?.Layers ?? Array.Empty<OrasDescriptor>(),
        Platform = manifest?.Platform,
        Convention = selection?.Convention,
        DiskFormat = selection?.DiskFormat,
        DiskType = selection?.DiskType,
        DiskName = selection?.DiskName,
        DeclaredSize = selection?.DeclaredSize,
        MemberPath = selection?.MemberPath,
        Sources = plan.Sources,
    };

    internal Uri BlobUriOf(string registry, string repository, string digest) =>
        _transport.RegistryUri(registry, $"/v2/{repository}/blobs/{digest}");

}
