@{
    RootModule           = 'OrasStaging.dll'
    ModuleVersion        = '0.1.0'
    CompatiblePSEditions = @('Core')
    GUID                 = '5b7d0f3e-4c1a-4e59-9a57-2f6a0c9e8d11'
    Author               = 'OrasStaging contributors'
    CompanyName          = 'OrasStaging contributors'
    Copyright            = '(c) 2026 OrasStaging contributors. MIT License.'
    Description          = 'Stages VM disk images published as oras:// artifacts (OCI registry blobs): resolves, downloads with resume and digest verification, decompresses (gzip, zstd, xz, bzip2) and writes qcow2, raw or fixed VHD natively, in one streaming pass.'
    PowerShellVersion    = '7.4'
    FormatsToProcess     = @('OrasStaging.Format.ps1xml')
    CmdletsToExport      = @('Resolve-OrasImage', 'Save-OrasBlob', 'Expand-DiskImage', 'Convert-DiskImage', 'Install-DiskImageFromOras', 'Get-StagedDiskImage')
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    PrivateData          = @{
        PSData = @{
            Tags         = @('oras', 'oci', 'registry', 'qcow2', 'vhd', 'disk-image', 'qemu', 'cijoe', 'PSEdition_Core', 'Linux', 'Windows', 'MacOS')
            ProjectUri   = 'https://github.com/safl/OrasStaging'
            LicenseUri   = 'https://github.com/safl/OrasStaging/blob/main/LICENSE'
            ReleaseNotes = '0.1.0: first release. Resolve-OrasImage, Save-OrasBlob, Expand-DiskImage, Convert-DiskImage and Install-DiskImageFromOras: a first-class OCI pull client (reactive auth, resume, retries, digest verification) and native one-pass qcow2, sparse raw and fixed VHD writers, with help, format views and completion. Full notes: https://github.com/safl/OrasStaging/blob/main/CHANGELOG.md'
        }
    }
}
