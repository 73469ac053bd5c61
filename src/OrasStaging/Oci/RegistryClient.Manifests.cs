using System.Net;
using System.Text;
using System.Text.Json;
using OrasStaging.Oci.Conventions;

namespace OrasStaging.Oci;

public sealed partial class RegistryClient
{
    internal sealed record ManifestBody(byte[] Body, string MediaType, string Digest);

    /// <summary>A tag at the sources that may resolve tags (the origin by default); a digest at mirrors first.</summary>
    private Task<ManifestBody> FetchManifestAsync(ImageReference reference, string tagOrDigest, string? expectedDigest, CancellationToken ct) =>
        AcrossAsync(reference, expectedDigest is null ? Mirrors.SourceRoles.ResolveTag : Mirrors.SourceRoles.Manifest,
            at => FetchManifestAtAsync(at, tagOrDigest, expectedDigest, ct), ct);

    private async Task<ManifestBody> FetchManifestAtAsync(Mirrors.SourceEndpoint at, string tagOrDigest, string? expectedDigest, CancellationToken ct)
    {
        var reference = at.Reference;
        string what = expectedDigest is null ? $"manifest {tagOrDigest}" : $"manifest {Units.ShortDigest(tagOrDigest)}";
        var request = Request(HttpMethod.Get, at, $"/manifests/{tagOrDigest}", what) with { Accept = ManifestTypes };
        using var small = await at.Transport.GetSmallAsync(request, MaxManifestBytes, what, ct).ConfigureAwait(false);
        var response = small.Response;
        if (small.Body is not { } body)
        {
            throw await at.Transport.ErrorFromAsync(response, request, ErrorCode.ManifestNotFound, ct).ConfigureAwait(false);
        }

        string? header = response.Headers.TryGetValues("Docker-Content-Digest", out var values) ? values.FirstOrDefault()?.Trim() : null;
        if (header is not null)
        {
            if (!Digest.IsValid(header))
            {
                throw new OrasStagingException(ErrorCode.RegistryProtocolError,
                    $"{reference.Registry} sent an unusable Docker-Content-Digest for {what}.");
            }

            string actual = Digest.Compute(header, body);
            if (!Digest.AreEqual(actual, header))
            {
                throw new OrasStagingException(ErrorCode.DigestMismatch,
                    $"The {what} from {reference.Registry} hashes to {actual}, but the registry said {header}.",
                    "Try again; if it persists, the registry or a proxy is corrupting responses.");
            }
        }

        if (expectedDigest is not null)
        {
            string actual = Digest.Compute(expectedDigest, body);
            if (!Digest.AreEqual(actual, expectedDigest))
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

        string digest = expectedDigest ?? header ?? Digest.Compute(Digest.Sha256Prefix, body);
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
                $"The {what} from {reference.Registry} says it is {Redaction.Untrusted(bodyType)}, but was served as {Redaction.Untrusted(mediaType)}.");
        }

        if (mediaType is null || !ManifestTypes.Contains(mediaType))
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                $"The {what} from {reference.Registry} has the media type '{(mediaType is null ? "(none)" : Redaction.Untrusted(mediaType))}', which is not an OCI or Docker v2 manifest or index.");
        }

        return new ManifestBody(body, mediaType, digest);
    }

    private async Task<OrasImage> FromManifestAsync(ImageReference reference, ManifestBody manifest, PinnedKind pinned, ResolveOptions options,
        CancellationToken ct)
    {
        var (chosen, facts) = await ChooseLayerAsync(reference, manifest, options, ct).ConfigureAwait(false);
        return NewImage(reference, pinned, chosen.Layer.Digest, chosen.Layer.Size, chosen.Layer, facts, chosen);
    }

    /// <summary>
    /// Through an index to one manifest (by platform, or by disk type: Conventions/IndexChoice), then to one layer
    /// (<paramref name="chooseDigest"/>'s if given; else Conventions/LayerChoice, and for a containerDisk the layer
    /// search through the tar headers).
    /// </summary>
    private async Task<(DiskSelection Chosen, ManifestFacts Facts)> ChooseLayerAsync(ImageReference reference, ManifestBody manifest,
        ResolveOptions options, CancellationToken ct, string? chooseDigest = null)
    {
        string? platform = null;
        IndexPick? pick = null;
        if (manifest.MediaType is OciIndex or DockerList)
        {
            var entries = ParseIndex(manifest.Body);
            pick = IndexChoice.Choose(entries, options, Selection.HostOs(), Selection.HostArchitecture(), reference.ToString());
            var entry = pick.Entry;
            platform = entry.Platform;
            _sink.Verbose($"{reference} is an index; taking {entry.Platform}"
                + (pick.DiskType is null ? string.Empty : $", disk type {pick.DiskType}") + $" ({Units.ShortDigest(entry.Digest)}).");
            manifest = await FetchManifestAsync(reference, entry.Digest, entry.Digest, ct).ConfigureAwait(false);
            if (manifest.MediaType is OciIndex or DockerList)
            {
                throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                    $"The {entry.Platform} entry of {reference} is another index; nested indexes are not supported.");
            }
        }

        var (layers, artifactType, annotations) = ParseManifest(manifest.Body, manifest.MediaType);
        DiskSelection chosen = chooseDigest is not null && layers.FirstOrDefault(l => Digest.AreEqual(l.Digest, chooseDigest)) is { } pinnedLayer
            ? LayerChoice.Describe(pinnedLayer, artifactType, pick)
            : LayerChoice.Choose(layers, artifactType, options, pick, reference.ToString());
        if (chooseDigest is null && chosen.Convention == DiskConvention.ContainerDisk)
        {
            chosen = await FindContainerDiskAsync(reference, chosen, layers, options, ct).ConfigureAwait(false);
        }

        if (chooseDigest is null && !options.ManifestsOnly && !options.DeferSidecar)
        {
            await CrossCheckSidecarAsync(reference, chosen.Layer, layers, ct).ConfigureAwait(false);
        }

        return (chosen, new ManifestFacts(manifest.Digest, artifactType, annotations, layers, platform));
    }

    /// <summary>
    /// The sidecar cross-check of an image resolved with <see cref="ResolveOptions.ManifestsOnly"/>, for when its
    /// bytes are about to be pulled: a run that skips by digest then costs the manifest requests only.
    /// </summary>
    internal Task CrossCheckSidecarAsync(OrasImage image, CancellationToken ct) =>
        image.PinnedKind != PinnedKind.Blob && image.Layers.FirstOrDefault(l => Digest.AreEqual(l.Digest, image.Digest)) is { } chosen
            ? CrossCheckSidecarAsync(ImageReference.Parse(image.Reference), chosen, image.Layers, ct)
            : Task.CompletedTask;

    /// <summary>When the manifest carries "&lt;title&gt;.sha256", its first word must be the layer digest's hex.</summary>
    private async Task CrossCheckSidecarAsync(ImageReference reference, OrasDescriptor chosen, IReadOnlyList<OrasDescriptor> layers, CancellationToken ct)
    {
        if (chosen.Title is null || !chosen.Digest.StartsWith(Digest.Sha256Prefix, StringComparison.Ordinal))
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
            // A blob like the layer: from the mirrors first, so a warm mirror spares the origin every blob request.
            byte[]? body = await AcrossAsync(reference, Mirrors.SourceRoles.Blob, async at =>
            {
                var request = Request(HttpMethod.Get, at, $"/blobs/{sidecar.Digest}", $"sidecar {sidecar.Title}");
                using var small = await at.Transport.GetSmallAsync(request, 64 * 1024, $"checksum sidecar {sidecar.Title}", ct).ConfigureAwait(false);
                if (small.Body is null)
                {
                    if (!at.IsOrigin)
                    {
                        throw await at.Transport.ErrorFromAsync(small.Response, request, ErrorCode.BlobNotFound, ct).ConfigureAwait(false);
                    }

                    _sink.Warning($"Could not fetch the checksum sidecar {sidecar.Title} (HTTP {(int)small.Response.StatusCode}); relying on the layer digest alone.");
                }

                return small.Body;
            }, ct).ConfigureAwait(false);
            if (body is null)
            {
                return;
            }

            if (!Digest.AreEqual(Digest.Compute(sidecar.Digest, body), sidecar.Digest))
            {
                throw new OrasStagingException(ErrorCode.DigestMismatch, $"The checksum sidecar {sidecar.Title} does not match its own digest.");
            }

            text = Encoding.UTF8.GetString(body);
        }
        catch (OrasStagingException ex) when (GiveUp.IsGiveUp(ex.Code) || ex.Code == ErrorCode.RegistryProtocolError)
        {
            _sink.Warning($"Could not fetch the checksum sidecar {sidecar.Title}: {ex.Message}");
            return;
        }

        string first = text.Trim().Split((char[]?)null, 2, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? string.Empty;
        string expected = chosen.Digest[Digest.Sha256Prefix.Length..];
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
}
