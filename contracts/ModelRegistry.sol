// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IModelRegistry, VariantId} from "./interfaces/IModelRegistry.sol";

/// @title Model registry
/// @notice See {IModelRegistry}.
contract ModelRegistry is IModelRegistry, AccessControl {
    /// @notice Role allowed to retire variants.
    bytes32 public constant GOVERNANCE_ROLE = keccak256("GOVERNANCE_ROLE");
    /// @notice Role allowed to register variants (after checking the manifest).
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    /// @notice Longest manifest URI accepted, in bytes.
    uint256 public constant MAX_URI_LENGTH = 512;

    mapping(VariantId id => Variant) private _variants;
    VariantId[] private _ids;

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(GOVERNANCE_ROLE, admin);
        _grantRole(REGISTRAR_ROLE, admin);
    }

    /// @inheritdoc IModelRegistry
    function registerVariant(VariantId id, uint16 numLayers, string calldata manifestURI) external onlyRole(REGISTRAR_ROLE) {
        if (VariantId.unwrap(id) == bytes32(0)) revert RegistryZeroVariantId();
        if (numLayers == 0) revert RegistryZeroLayers();
        uint256 uriLength = bytes(manifestURI).length;
        if (uriLength == 0 || uriLength > MAX_URI_LENGTH) revert RegistryBadManifestURI(uriLength, MAX_URI_LENGTH);
        if (_variants[id].numLayers != 0) revert RegistryVariantExists(id);

        _variants[id] = Variant({
            numLayers: numLayers,
            retired: false,
            registeredAt: uint64(block.timestamp),
            registrant: msg.sender,
            manifestURI: manifestURI
        });
        _ids.push(id);
        emit VariantRegistered(id, msg.sender, numLayers, manifestURI);
    }

    /// @inheritdoc IModelRegistry
    function retireVariant(VariantId id) external onlyRole(GOVERNANCE_ROLE) {
        Variant storage v = _known(id);
        if (v.retired) revert RegistryVariantRetired(id);
        v.retired = true;
        emit VariantRetired(id);
    }

    /// @inheritdoc IModelRegistry
    function variant(VariantId id) external view returns (Variant memory) {
        return _known(id);
    }

    /// @inheritdoc IModelRegistry
    function isActive(VariantId id) external view returns (bool) {
        Variant storage v = _variants[id];
        return v.numLayers != 0 && !v.retired;
    }

    /// @inheritdoc IModelRegistry
    function variantCount() external view returns (uint256) {
        return _ids.length;
    }

    /// @inheritdoc IModelRegistry
    function variantIds(uint256 offset, uint256 limit) external view returns (VariantId[] memory page) {
        uint256 total = _ids.length;
        if (offset >= total) return new VariantId[](0);
        uint256 end = total - offset < limit ? total : offset + limit;
        page = new VariantId[](end - offset);
        for (uint256 i = offset; i < end; ++i) {
            page[i - offset] = _ids[i];
        }
    }

    function _known(VariantId id) private view returns (Variant storage v) {
        v = _variants[id];
        if (v.numLayers == 0) revert RegistryUnknownVariant(id);
    }
}
